//! RAVDESS file names: `MM-VV-EE-II-SS-RR-AA.mp4`, parsed into a typed [`RavdessName`] and formatted back.
//!
//! Every stage that looks at a clip goes through this one parser, so a name is either understood the same
//! way everywhere or rejected with a [`NameError`] that says which field is wrong and why. The fields are
//! modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion
//! (01..08, see [`EMOTIONS`]), intensity (01 normal, 02 strong; neutral has only 01), statement (01, 02),
//! repetition (01, 02) and actor (01..24, odd male, even female). In the published corpus songs carry only
//! the emotions neutral..fearful (01..06); a song named with disgust or surprised is rejected too.

use std::fmt;
use std::str::FromStr;

/// Emotion names in label order: `label = emotion id - 1`.
pub const EMOTIONS: [&str; 8] = stage_formats::CLASS_NAMES;

/// The highest emotion id a song may carry (fearful); disgust and surprised were only spoken.
pub const SONG_MAX_EMOTION: u8 = 6;

/// The first field of a name: which streams the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modality {
    /// `01`: video with audio.
    AudioVideo = 1,
    /// `02`: video without audio.
    VideoOnly = 2,
    /// `03`: audio only (a `.wav` in the corpus; never a video).
    AudioOnly = 3,
}

impl Modality {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::AudioVideo),
            2 => Some(Self::VideoOnly),
            3 => Some(Self::AudioOnly),
            _ => None,
        }
    }
}

/// The second field: spoken or sung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VocalChannel {
    Speech = 1,
    Song = 2,
}

impl VocalChannel {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Speech),
            2 => Some(Self::Song),
            _ => None,
        }
    }
}

/// One parsed RAVDESS name. Field values are the numbers written in the name (emotion 1..8, actor 1..24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RavdessName {
    pub modality: Modality,
    pub vocal_channel: VocalChannel,
    /// 1..=8, see [`EMOTIONS`].
    pub emotion: u8,
    /// 1 normal, 2 strong.
    pub intensity: u8,
    /// 1 "Kids are talking by the door", 2 "Dogs are sitting by the door".
    pub statement: u8,
    pub repetition: u8,
    /// 1..=24.
    pub actor: u8,
}

/// Why a file name is not a RAVDESS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{name}` is not an .mp4 file name (RAVDESS videos are named MM-VV-EE-II-SS-RR-AA.mp4)")]
    NotMp4 { name: String },
    #[error("`{name}` has {found} dash-separated fields, expected 7 (MM-VV-EE-II-SS-RR-AA)")]
    FieldCount { name: String, found: usize },
    #[error("`{name}`: field {field} is `{value}`, expected two digits")]
    NotTwoDigits { name: String, field: Field, value: String },
    #[error("`{name}`: {field} is {value:02}, expected {expected}")]
    OutOfRange { name: String, field: Field, value: u8, expected: &'static str },
    #[error("`{name}`: neutral (emotion 01) has only normal intensity 01, found intensity {intensity:02}")]
    StrongNeutral { name: String, intensity: u8 },
    #[error("`{name}`: songs carry only emotions 01..06, found {emotion:02} ({})", EMOTIONS[usize::from(*emotion) - 1])]
    SongEmotion { name: String, emotion: u8 },
}

/// The seven fields of a name, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Modality,
    VocalChannel,
    Emotion,
    Intensity,
    Statement,
    Repetition,
    Actor,
}

impl Field {
    const ALL: [Field; 7] =
        [Field::Modality, Field::VocalChannel, Field::Emotion, Field::Intensity, Field::Statement, Field::Repetition, Field::Actor];

    /// The accepted range and its meaning.
    fn expected(self) -> &'static str {
        match self {
            Field::Modality => "01 (audio-video), 02 (video-only) or 03 (audio-only)",
            Field::VocalChannel => "01 (speech) or 02 (song)",
            Field::Emotion => "01..08 (neutral calm happy sad angry fearful disgust surprised)",
            Field::Intensity => "01 (normal) or 02 (strong)",
            Field::Statement => "01 or 02",
            Field::Repetition => "01 or 02",
            Field::Actor => "01..24",
        }
    }

    fn range(self) -> (u8, u8) {
        match self {
            Field::Modality => (1, 3),
            Field::Emotion => (1, 8),
            Field::Actor => (1, 24),
            _ => (1, 2),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Modality => "modality",
            Field::VocalChannel => "vocal channel",
            Field::Emotion => "emotion",
            Field::Intensity => "intensity",
            Field::Statement => "statement",
            Field::Repetition => "repetition",
            Field::Actor => "actor",
        })
    }
}

impl RavdessName {
    /// Parses a file name (`02-01-05-02-01-01-12.mp4`; a directory part is ignored, the extension is
    /// required and may be in any case).
    pub fn parse_file_name(file_name: &str) -> Result<Self, NameError> {
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        match base.rsplit_once('.') {
            Some((stem, ext)) if ext.eq_ignore_ascii_case("mp4") => Self::parse_stem_of(stem, base),
            _ => Err(NameError::NotMp4 { name: base.to_owned() }),
        }
    }

    /// Parses a stem without extension (`02-01-05-02-01-01-12`).
    pub fn parse_stem(stem: &str) -> Result<Self, NameError> {
        Self::parse_stem_of(stem, stem)
    }

    fn parse_stem_of(stem: &str, name: &str) -> Result<Self, NameError> {
        let parts: Vec<&str> = stem.split('-').collect();
        if parts.len() != 7 {
            return Err(NameError::FieldCount { name: name.to_owned(), found: parts.len() });
        }
        let mut values = [0u8; 7];
        for ((value, part), field) in values.iter_mut().zip(&parts).zip(Field::ALL) {
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NameError::NotTwoDigits { name: name.to_owned(), field, value: (*part).to_owned() });
            }
            let n = part.parse::<u8>().map_err(|_| NameError::NotTwoDigits { name: name.to_owned(), field, value: (*part).to_owned() })?;
            let (lo, hi) = field.range();
            if n < lo || n > hi {
                return Err(NameError::OutOfRange { name: name.to_owned(), field, value: n, expected: field.expected() });
            }
            *value = n;
        }
        let [m, v, emotion, intensity, statement, repetition, actor] = values;
        let parsed = RavdessName {
            // Both codes were range-checked above.
            modality: Modality::from_code(m).unwrap_or(Modality::VideoOnly),
            vocal_channel: VocalChannel::from_code(v).unwrap_or(VocalChannel::Speech),
            emotion,
            intensity,
            statement,
            repetition,
            actor,
        };
        parsed.validate().map_err(|e| e.with_name(name))?;
        Ok(parsed)
    }

    /// Checks the cross-field rules (strong neutral, sung disgust/surprised) and the ranges; the error's
    /// name is this value's file name.
    pub fn validate(&self) -> Result<(), NameError> {
        let name = self.file_name();
        let checks = [
            (Field::Emotion, self.emotion),
            (Field::Intensity, self.intensity),
            (Field::Statement, self.statement),
            (Field::Repetition, self.repetition),
            (Field::Actor, self.actor),
        ];
        for (field, value) in checks {
            let (lo, hi) = field.range();
            if value < lo || value > hi {
                return Err(NameError::OutOfRange { name, field, value, expected: field.expected() });
            }
        }
        if self.emotion == 1 && self.intensity != 1 {
            return Err(NameError::StrongNeutral { name, intensity: self.intensity });
        }
        if self.vocal_channel == VocalChannel::Song && self.emotion > SONG_MAX_EMOTION {
            return Err(NameError::SongEmotion { name, emotion: self.emotion });
        }
        Ok(())
    }

    /// The class index, 0..=7 (`emotion - 1`).
    pub fn label(&self) -> u8 {
        self.emotion - 1
    }

    /// The emotion's name (`surprised`).
    pub fn emotion_name(&self) -> &'static str {
        EMOTIONS[usize::from(self.label())]
    }

    /// Odd actors are male, even actors female.
    pub fn is_male(&self) -> bool {
        self.actor % 2 == 1
    }

    /// The recording's id without the modality: `VV-EE-II-SS-RR-AA`. The `01-` and `02-` files of one
    /// recording share it.
    pub fn clip_id(&self) -> String {
        format!(
            "{:02}-{:02}-{:02}-{:02}-{:02}-{:02}",
            self.vocal_channel.code(),
            self.emotion,
            self.intensity,
            self.statement,
            self.repetition,
            self.actor
        )
    }

    /// The stem `MM-VV-EE-II-SS-RR-AA`.
    pub fn stem(&self) -> String {
        format!("{:02}-{}", self.modality.code(), self.clip_id())
    }

    /// The file name `MM-VV-EE-II-SS-RR-AA.mp4`.
    pub fn file_name(&self) -> String {
        format!("{}.mp4", self.stem())
    }

    /// The actor folder used by the corpus: `Actor_NN`.
    pub fn actor_dir(&self) -> String {
        format!("Actor_{:02}", self.actor)
    }
}

impl NameError {
    fn with_name(self, name: &str) -> Self {
        let name = name.to_owned();
        match self {
            NameError::OutOfRange { field, value, expected, .. } => NameError::OutOfRange { name, field, value, expected },
            NameError::StrongNeutral { intensity, .. } => NameError::StrongNeutral { name, intensity },
            NameError::SongEmotion { emotion, .. } => NameError::SongEmotion { name, emotion },
            other => other,
        }
    }
}

impl fmt::Display for RavdessName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

impl FromStr for RavdessName {
    type Err = NameError;

    /// Accepts a file name with `.mp4` or a bare stem.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('.') {
            Self::parse_file_name(s)
        } else {
            Self::parse_stem(s)
        }
    }
}

/// Looks an emotion up by name (`"happy"`, any case) or by id (`"3"`, `"03"`); returns the id 1..=8.
pub fn emotion_id(text: &str) -> Option<u8> {
    let t = text.trim();
    if let Some(i) = EMOTIONS.iter().position(|e| e.eq_ignore_ascii_case(t)) {
        return Some(i as u8 + 1);
    }
    match t.parse::<u8>() {
        Ok(n @ 1..=8) => Some(n),
        _ => None,
    }
}

/// An entry of an emotion list that is neither an emotion's name nor its id.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown emotion {0}: use a name ({known}) or an id 1..8", known = EMOTIONS.join(", "))]
pub struct UnknownEmotion(pub serde_json::Value);

/// Resolves a parameter list of emotions given by name (`"happy"`) or id (`3`, `"03"`) into sorted,
/// de-duplicated ids 1..=8; the error names the entry that is neither.
pub fn emotion_list(values: &[serde_json::Value]) -> Result<Vec<u8>, UnknownEmotion> {
    let mut ids = Vec::with_capacity(values.len());
    for v in values {
        let id = match v {
            serde_json::Value::String(s) => emotion_id(s),
            serde_json::Value::Number(n) => n.as_u64().filter(|n| (1..=8).contains(n)).map(|n| n as u8),
            _ => None,
        };
        match id {
            Some(id) => ids.push(id),
            None => return Err(UnknownEmotion(v.clone())),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_real_clip_name() {
        let n = RavdessName::parse_file_name("01-01-08-02-01-01-19.mp4").unwrap();
        assert_eq!(n.modality, Modality::AudioVideo);
        assert_eq!(n.vocal_channel, VocalChannel::Speech);
        assert_eq!((n.emotion, n.intensity, n.statement, n.repetition, n.actor), (8, 2, 1, 1, 19));
        assert_eq!(n.label(), 7);
        assert_eq!(n.emotion_name(), "surprised");
        assert!(n.is_male());
        assert_eq!(n.clip_id(), "01-08-02-01-01-19");
        assert_eq!(n.file_name(), "01-01-08-02-01-01-19.mp4");
        assert_eq!(n.actor_dir(), "Actor_19");
    }

    #[test]
    fn round_trips_and_accepts_paths_and_upper_case_extension() {
        let n: RavdessName = "Actor_12/02-02-03-01-02-02-12.MP4".parse().unwrap();
        assert_eq!(n.stem(), "02-02-03-01-02-02-12");
        assert!(!n.is_male());
        assert_eq!(RavdessName::parse_stem(&n.stem()).unwrap(), n);
    }

    fn err(name: &str) -> NameError {
        RavdessName::parse_file_name(name).unwrap_err()
    }

    #[test]
    fn every_kind_of_bad_name_has_its_own_error() {
        assert!(matches!(err("02-01-05-02-01-01-12.wav"), NameError::NotMp4 { .. }));
        assert!(matches!(err("02-01-05-02-01-01-12"), NameError::NotMp4 { .. }));
        assert!(matches!(err("clip.mp4"), NameError::FieldCount { found: 1, .. }));
        assert!(matches!(err("02-01-05-02-01-01-12-3.mp4"), NameError::FieldCount { found: 8, .. }));
        assert!(matches!(err("02-01-5-02-01-01-12.mp4"), NameError::NotTwoDigits { field: Field::Emotion, .. }));
        assert!(matches!(err("02-01-05-02-01-01-x2.mp4"), NameError::NotTwoDigits { field: Field::Actor, .. }));
        assert!(matches!(err("02-+1-05-02-01-01-12.mp4"), NameError::NotTwoDigits { .. }));
        let cases = [
            ("04-01-05-02-01-01-12.mp4", Field::Modality, 4),
            ("00-01-05-02-01-01-12.mp4", Field::Modality, 0),
            ("02-03-05-02-01-01-12.mp4", Field::VocalChannel, 3),
            ("02-01-09-02-01-01-12.mp4", Field::Emotion, 9),
            ("02-01-00-02-01-01-12.mp4", Field::Emotion, 0),
            ("02-01-05-03-01-01-12.mp4", Field::Intensity, 3),
            ("02-01-05-02-03-01-12.mp4", Field::Statement, 3),
            ("02-01-05-02-01-00-12.mp4", Field::Repetition, 0),
            ("02-01-05-02-01-01-25.mp4", Field::Actor, 25),
            ("02-01-05-02-01-01-00.mp4", Field::Actor, 0),
        ];
        for (name, want_field, want_value) in cases {
            match err(name) {
                NameError::OutOfRange { field, value, name: n, .. } => {
                    assert_eq!((field, value, n.as_str()), (want_field, want_value, name))
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(err("02-01-01-02-01-01-12.mp4"), NameError::StrongNeutral { intensity: 2, .. }));
        assert!(matches!(err("02-02-07-01-01-01-12.mp4"), NameError::SongEmotion { emotion: 7, .. }));
        assert!(matches!(err("02-02-08-01-01-01-12.mp4"), NameError::SongEmotion { emotion: 8, .. }));
    }

    #[test]
    fn messages_name_the_file_and_the_field() {
        let text = err("02-01-05-02-01-01-25.mp4").to_string();
        assert!(text.contains("02-01-05-02-01-01-25.mp4") && text.contains("actor is 25") && text.contains("01..24"), "{text}");
        let text = err("02-02-08-01-01-01-12.mp4").to_string();
        assert!(text.contains("surprised"), "{text}");
    }

    #[test]
    fn emotion_lookup_by_name_or_id() {
        assert_eq!(emotion_id("Happy"), Some(3));
        assert_eq!(emotion_id("08"), Some(8));
        assert_eq!(emotion_id("8"), Some(8));
        assert_eq!(emotion_id("9"), None);
        assert_eq!(emotion_id("joy"), None);
        let list: Vec<serde_json::Value> = serde_json::from_str(r#"["sad", 3, "03", "Neutral"]"#).unwrap();
        assert_eq!(emotion_list(&list).unwrap(), vec![1, 3, 4]);
        let bad: Vec<serde_json::Value> = serde_json::from_str(r#"["sad", 9]"#).unwrap();
        assert!(emotion_list(&bad).unwrap_err().to_string().contains("unknown emotion 9"));
    }
}
