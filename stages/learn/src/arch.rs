//! The architectures of the study by their configuration names (the models themselves are in
//! `stages-torch`, one file each).

/// The architectures, by their stable configuration names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    EarlyFusionCnn,
    EarlyFusionResnet18,
    LateFusionResnet18,
    R3d18,
    Resnet18Lstm,
}

impl Arch {
    /// Every architecture, in the study's order.
    pub const ALL: [Arch; 5] = [Arch::EarlyFusionCnn, Arch::EarlyFusionResnet18, Arch::LateFusionResnet18, Arch::R3d18, Arch::Resnet18Lstm];

    /// The configuration name (`early_fusion_cnn`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Arch::EarlyFusionCnn => "early_fusion_cnn",
            Arch::EarlyFusionResnet18 => "early_fusion_resnet18",
            Arch::LateFusionResnet18 => "late_fusion_resnet18",
            Arch::R3d18 => "r3d18",
            Arch::Resnet18Lstm => "resnet18_lstm",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How `late_fusion_resnet18` merges its per-frame features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemporalPool {
    /// Average of the T frame features (512-d into the head).
    #[default]
    Mean,
    /// Concatenation of the T frame features (512·T-d into the head).
    Concat,
}
