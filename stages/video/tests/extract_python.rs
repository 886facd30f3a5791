//! A real Python client reads the extract cache with `pyarrow` and `safetensors.numpy` only,
//! and must see exactly what the Rust side wrote (shapes, dtype, every byte via a checksum).
//! Runs the venv's python (`$PIPELINE_TORCH_VENV/bin/python`, default
//! `~/.cache/pipeline/torch-2.13.0/bin/python`); skipped with a loud message when absent.

mod extract_support;

use std::path::PathBuf;
use std::process::Command;

use extract_support::*;
use safetensors::SafeTensors;
use stage_formats::tensor_cache::read_index;

const CLIENT: &str = r#"
import json, sys, zlib
import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file

root = sys.argv[1]
index = pq.read_table(f"{root}/index.parquet")
assert index.schema.field("label").type == "int32", index.schema
assert index.schema.field("box_x").type == "float", index.schema
shards, out = {}, []
for row in index.to_pylist():
    if row["shard"] not in shards:
        shards[row["shard"]] = load_file(f"{root}/shards/{row['shard']}")
    clip = shards[row["shard"]][row["tensor"]]
    out.append({
        "clip_id": row["clip_id"], "label": row["label"], "emotion": row["emotion"],
        "shape": list(clip.shape), "dtype": str(clip.dtype),
        "crc32": zlib.crc32(clip.tobytes()), "mean": float(clip.mean()),
        "pixel": clip[row["frames"] // 2, row["size"] // 2, row["size"] // 2].tolist(),
        "fallback": row["fallback"],
    })
print(json.dumps(out))
"#;

fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("PIPELINE_TORCH_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/pipeline/torch-2.13.0")))?;
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

/// CRC-32 (IEEE), as Python's `zlib.crc32`.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn python_reads_the_cache_with_pyarrow_and_safetensors() {
    let Some(py) = python() else {
        eprintln!("\n*** SKIPPED python_reads_the_cache_with_pyarrow_and_safetensors: no venv python (set PIPELINE_TORCH_VENV or run scripts/setup.sh) ***\n");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let noface = testsrc(tmp.path(), "noface.mp4", 160, 120, 12);
    let clips = vec![
        record("01-01-08-02-01-19", &real("01-01-08-02-01-01-19.mp4"), 19, 7, 122),
        record("01-01-03-01-01-02", &real("closeup_512.mp4"), 2, 2, 354),
        record("01-01-01-01-01-03", &noface, 3, 0, 12),
    ];
    // 6 x 64 x 64 x 3 = 72 KiB per clip, shard_mb 1: all in one shard.
    let run = run(&clips, serde_json::json!({"frames": 6, "size": 64}), 2);
    run.result.as_ref().unwrap();
    let script = tmp.path().join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let out = Command::new(&py).arg(&script).arg(&run.out).output().unwrap();
    assert!(out.status.success(), "python client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();

    let rows = read_index(&run.out.join("index.parquet")).unwrap();
    assert_eq!(seen.len(), rows.len());
    for (py_row, row) in seen.iter().zip(&rows) {
        let bytes = std::fs::read(run.out.join("shards").join(&row.shard)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor(&row.tensor).unwrap();
        assert_eq!(py_row["clip_id"], row.clip_id.as_str());
        assert_eq!(py_row["label"], row.label);
        assert_eq!(py_row["emotion"], row.emotion.as_str());
        assert_eq!(py_row["fallback"], row.fallback);
        assert_eq!(py_row["shape"], serde_json::json!([6, 64, 64, 3]));
        assert_eq!(py_row["dtype"], "uint8");
        assert_eq!(py_row["crc32"], crc32(t.data()), "{}: bytes differ", row.clip_id);
        let mean = t.data().iter().map(|&b| f64::from(b)).sum::<f64>() / t.data().len() as f64;
        assert!((py_row["mean"].as_f64().unwrap() - mean).abs() < 1e-6);
        let o = ((3 * 64 + 32) * 64 + 32) * 3;
        assert_eq!(py_row["pixel"], serde_json::json!(&t.data()[o..o + 3]), "[T/2, S/2, S/2] is RGB in THWC order");
    }
}
