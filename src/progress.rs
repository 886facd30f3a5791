//! What the user sees while a run goes on: one line per stage event and, for long stages,
//! progress bars (indicatif) on a terminal or plain periodic lines otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Plain progress lines are printed at most this often per stage.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

pub struct Reporter {
    bars: Option<MultiProgress>,
    quiet: bool,
}

impl Reporter {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { bars, quiet }
    }

    /// A line on stderr that does not garble the bars.
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Columns of the terminal the bars draw on; `None` in a pipe (lines are not cut there).
    pub fn terminal_width(&self) -> Option<usize> {
        self.bars.as_ref()?;
        console::Term::stderr().size_checked().map(|(_rows, columns)| usize::from(columns))
    }

    pub fn stage(&self, instance: &str) -> StageProgress<'_> {
        StageProgress { reporter: self, instance: instance.to_owned(), state: Mutex::new(State::default()) }
    }
}

#[derive(Default)]
struct State {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    unit: String,
    last_line: Option<Instant>,
}

/// The [`stage_api::Progress`] handed to one stage instance.
pub struct StageProgress<'a> {
    reporter: &'a Reporter,
    instance: String,
    state: Mutex<State>,
}

impl stage_api::Progress for StageProgress<'_> {
    fn start(&self, total: u64, unit: &str) {
        let mut state = self.state.lock().expect("progress lock");
        if let Some(old) = state.bar.take() {
            old.finish_and_clear();
        }
        state.total = total;
        state.done = 0;
        state.unit = unit.to_owned();
        state.last_line = None;
        if let Some(multi) = &self.reporter.bars {
            let bar = multi.add(ProgressBar::new(total));
            let style = ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {msg} · {elapsed} so far, {left}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("left", time_left)
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(self.instance.clone());
            bar.set_message(unit.to_owned());
            state.bar = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        let mut state = self.state.lock().expect("progress lock");
        state.done += n;
        if let Some(bar) = &state.bar {
            bar.inc(n);
            return;
        }
        let due = state.last_line.is_none_or(|t| t.elapsed() >= PLAIN_INTERVAL) || state.done == state.total;
        if due && state.total > 0 {
            state.last_line = Some(Instant::now());
            self.reporter.line(&format!("{}: {}/{} {}", self.instance, state.done, state.total, state.unit));
        }
    }

    fn note(&self, message: &str) {
        self.reporter.line(&format!("{}: {message}", self.instance));
    }
}

/// indicatif's `{eta}` with words, and no guess before the first step is done.
fn time_left(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let text = match state.pos() {
        0 => "time left unknown".to_owned(),
        _ => format!("about {:#} left", HumanDuration(state.eta())),
    };
    let _ = out.write_str(&text);
}

impl Drop for StageProgress<'_> {
    fn drop(&mut self) {
        if let Some(bar) = self.state.lock().ok().and_then(|mut s| s.bar.take()) {
            bar.finish_and_clear();
        }
    }
}
