//! Developer tasks for the Strom workspace.
//!
//! `cargo run -p xtask -- codegen [--schemas DIR] [--metadata-schemas DIR]` reads Kafka's JSON message
//! schemas and writes the Rust codec for them into `crates/protocol/src/messages/` (requests,
//! responses, headers and data types) and `crates/protocol/src/metadata_records/` (KRaft metadata
//! records), and `crates/protocol/src/error_code.rs` from Kafka's error code table
//! (`--error-codes FILE`, default `../shared/kafka-error-codes.tsv`). A protocol schema with a
//! file of the same name in `xtask/extensions/` gets Strom's tagged fields from it. The output is
//! checked in, so building the workspace never needs the schemas.

mod codegen;
mod error_codes;
mod schema;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

const USAGE: &str =
    "usage: cargo run -p xtask -- codegen [--schemas DIR] [--metadata-schemas DIR] \
                     [--error-codes FILE] [--no-fmt]";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(task) = args.next() else {
        bail!("{USAGE}");
    };
    if task != "codegen" {
        bail!("unknown task {task:?}\n{USAGE}");
    }
    let workspace_root = workspace_root()?;
    let mut options = codegen::Options {
        protocol_schemas: workspace_root.join("../shared/kafka-protocol-schemas"),
        metadata_schemas: workspace_root.join("../shared/kafka-metadata-schemas"),
        error_codes: workspace_root.join("../shared/kafka-error-codes.tsv"),
        extensions: workspace_root.join("xtask/extensions"),
        protocol_crate: workspace_root.join("crates/protocol"),
        run_rustfmt: true,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--schemas" => {
                options.protocol_schemas =
                    PathBuf::from(args.next().context("--schemas needs a directory")?);
            }
            "--metadata-schemas" => {
                options.metadata_schemas = PathBuf::from(
                    args.next()
                        .context("--metadata-schemas needs a directory")?,
                );
            }
            "--error-codes" => {
                options.error_codes =
                    PathBuf::from(args.next().context("--error-codes needs a file")?);
            }
            "--no-fmt" => options.run_rustfmt = false,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    codegen::run(&options)
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .context("xtask manifest directory has no parent")
}
