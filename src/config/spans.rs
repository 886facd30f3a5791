//! Where each node of `pipeline.yaml` sits in the file.
//!
//! serde tells us the location of *syntax and type* errors, but the checks that come after
//! deserialisation (a `needs` naming no stage, a cycle, a bad parameter) need the line and column
//! of a node given its path (`stages.train.needs.1`). This index records the position of every
//! mapping key and sequence item from the YAML event stream.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Path (segments joined with `.`) to position.
#[derive(Debug, Default)]
pub struct SpanIndex {
    positions: HashMap<String, Position>,
}

impl SpanIndex {
    /// Indexes `text`. A document that does not parse yields an empty index (the caller
    /// reports serde's syntax error instead).
    pub fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Self::default();
        }
        Self { positions: walker.positions }
    }

    /// The position of the node at `path`, or of its nearest indexed ancestor.
    pub fn find(&self, path: &[&str]) -> Option<Position> {
        (1..=path.len()).rev().find_map(|len| self.positions.get(&path[..len].join(".")).copied())
    }
}

enum Frame {
    Mapping { key: Option<String> },
    Sequence { index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    positions: HashMap<String, Position>,
}

impl Walker {
    fn path(&self) -> Vec<String> {
        self.stack
            .iter()
            .filter_map(|frame| match frame {
                Frame::Mapping { key } => key.clone(),
                Frame::Sequence { index } => Some(index.to_string()),
            })
            .collect()
    }

    fn record_here(&mut self, mark: Marker) {
        self.positions.entry(self.path().join(".")).or_insert(Position { line: mark.line(), column: mark.col() + 1 });
    }

    /// Called when a node (scalar or collection start) begins; returns whether the node is a
    /// mapping key (and so does not itself start a value).
    fn begin_node(&mut self, key_text: Option<&str>, mark: Marker) -> bool {
        match self.stack.last() {
            Some(Frame::Mapping { key: None }) => {
                let text = key_text.unwrap_or("?").to_owned();
                if let Some(Frame::Mapping { key }) = self.stack.last_mut() {
                    *key = Some(text);
                }
                self.record_here(mark);
                true
            }
            Some(Frame::Sequence { .. }) => {
                self.record_here(mark);
                false
            }
            _ => false,
        }
    }

    /// Called when a value (scalar or whole collection) has ended.
    fn end_value(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { key }) => *key = None,
            Some(Frame::Sequence { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                let is_key = self.begin_node(Some(&text), mark);
                if !is_key {
                    self.end_value();
                }
            }
            Event::Alias(_) => {
                let is_key = self.begin_node(None, mark);
                if !is_key {
                    self.end_value();
                }
            }
            Event::MappingStart(..) => {
                self.begin_node(None, mark);
                self.stack.push(Frame::Mapping { key: None });
            }
            Event::SequenceStart(..) => {
                self.begin_node(None, mark);
                self.stack.push(Frame::Sequence { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.end_value();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "stages:\n  a:\n    run: echo hi\n    needs: [b, c]\n  b:\n    needs:\n      - c\n";

    #[test]
    fn finds_keys_and_sequence_items() {
        let index = SpanIndex::build(YAML);
        assert_eq!(index.find(&["stages", "a"]), Some(Position { line: 2, column: 3 }));
        assert_eq!(index.find(&["stages", "a", "needs", "1"]), Some(Position { line: 4, column: 16 }));
        assert_eq!(index.find(&["stages", "b", "needs", "0"]), Some(Position { line: 7, column: 9 }));
    }

    #[test]
    fn falls_back_to_nearest_ancestor() {
        let index = SpanIndex::build(YAML);
        assert_eq!(index.find(&["stages", "a", "with", "x"]), index.find(&["stages", "a"]));
    }
}
