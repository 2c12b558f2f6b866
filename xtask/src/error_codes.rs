//! Generates `crates/protocol/src/error_code.rs` from Kafka's error code table
//! (`kafka-error-codes.tsv`: a `code<TAB>name` header, then one code and Kafka's `Errors` name per
//! line): a `#[repr(i16)]` enum with one variant per code and its `code`, `from_code` and `name`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// One row of the table: the wire code and Kafka's name (`NOT_ENOUGH_REPLICAS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCodeRow {
    pub code: i16,
    pub name: String,
}

/// Reads and checks the table: the expected header, one unique code and one unique upper-case name
/// per line.
pub fn load(path: &Path) -> Result<Vec<ErrorCodeRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

fn parse(text: &str) -> Result<Vec<ErrorCodeRow>> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim_end() == "code\tname" => {}
        Some((_, header)) => bail!("expected the header \"code<TAB>name\", found {header:?}"),
        None => bail!("the table is empty"),
    }
    let mut rows: Vec<ErrorCodeRow> = Vec::new();
    for (index, line) in lines {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (code, name) = line
            .split_once('\t')
            .with_context(|| format!("line {line_number}: expected code<TAB>name"))?;
        let code: i16 = code
            .trim()
            .parse()
            .with_context(|| format!("line {line_number}: {code:?} is not a 16-bit code"))?;
        let name = name.trim().to_string();
        let well_formed = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !well_formed {
            bail!("line {line_number}: {name:?} is not an upper-case Kafka error name");
        }
        if let Some(other) = rows.iter().find(|row| row.code == code || row.name == name) {
            bail!(
                "line {line_number}: {name} ({code}) repeats {} ({})",
                other.name,
                other.code
            );
        }
        rows.push(ErrorCodeRow { code, name });
    }
    Ok(rows)
}

/// `NOT_ENOUGH_REPLICAS` -> `NotEnoughReplicas`.
fn variant_name(kafka_name: &str) -> String {
    kafka_name
        .split('_')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The text of `error_code.rs`, starting with `header` (the generated-file marker).
pub fn generate(rows: &[ErrorCodeRow], header: &str) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "{header}")?;
    out.push_str(
        "//! Kafka's error codes (the `Errors` enum of Apache Kafka), generated from\n\
         //! `kafka-error-codes.tsv`. Handlers put [`ErrorCode::code`] on the wire, e.g.\n\
         //! `ErrorCode::NotEnoughReplicas.code()`; [`ErrorCode::from_code`] reads one back and\n\
         //! [`ErrorCode::name`] gives Kafka's name (`NOT_ENOUGH_REPLICAS`) for messages and logs.\n\n\
         use std::fmt;\n\n\
         /// A Kafka error code; the discriminant is the code sent on the wire.\n\
         #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]\n\
         #[repr(i16)]\n\
         pub enum ErrorCode {\n",
    );
    for row in rows {
        writeln!(out, "/// `{}` ({}).", row.name, row.code)?;
        writeln!(out, "{} = {},", variant_name(&row.name), row.code)?;
    }
    out.push_str("}\n\nimpl ErrorCode {\n");
    writeln!(
        out,
        "/// Every error code, in the order of the table (by code)."
    )?;
    writeln!(out, "pub const ALL: [ErrorCode; {}] = [", rows.len())?;
    for row in rows {
        writeln!(out, "ErrorCode::{},", variant_name(&row.name))?;
    }
    out.push_str(
        "];\n\n\
         /// The code sent on the wire.\n\
         pub const fn code(self) -> i16 {\n\
         self as i16\n\
         }\n\n\
         /// The error with this wire code, if Kafka defines one.\n\
         pub const fn from_code(code: i16) -> Option<Self> {\n\
         match code {\n",
    );
    for row in rows {
        writeln!(
            out,
            "{} => Some(ErrorCode::{}),",
            row.code,
            variant_name(&row.name)
        )?;
    }
    out.push_str(
        "_ => None,\n\
         }\n\
         }\n\n\
         /// Kafka's name of the error (`NOT_ENOUGH_REPLICAS`).\n\
         pub const fn name(self) -> &'static str {\n\
         match self {\n",
    );
    for row in rows {
        writeln!(
            out,
            "ErrorCode::{} => \"{}\",",
            variant_name(&row.name),
            row.name
        )?;
    }
    out.push_str(
        "}\n\
         }\n\
         }\n\n\
         impl From<ErrorCode> for i16 {\n\
         fn from(error: ErrorCode) -> i16 {\n\
         error.code()\n\
         }\n\
         }\n\n\
         impl fmt::Display for ErrorCode {\n\
         /// Kafka's name and the code: `NOT_ENOUGH_REPLICAS (19)`.\n\
         fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {\n\
         write!(f, \"{} ({})\", self.name(), self.code())\n\
         }\n\
         }\n",
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_names_variants() {
        let rows =
            parse("code\tname\n-1\tUNKNOWN_SERVER_ERROR\n0\tNONE\n19\tNOT_ENOUGH_REPLICAS\n")
                .expect("valid table");
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2],
            ErrorCodeRow {
                code: 19,
                name: "NOT_ENOUGH_REPLICAS".into()
            }
        );
        assert_eq!(variant_name("NOT_ENOUGH_REPLICAS"), "NotEnoughReplicas");
        assert_eq!(variant_name("NONE"), "None");
        let text = generate(&rows, "// header").expect("generated");
        assert!(text.contains("NotEnoughReplicas = 19,"));
        assert!(text.contains("-1 => Some(ErrorCode::UnknownServerError),"));
        assert!(text.contains("pub const ALL: [ErrorCode; 3]"));
    }

    #[test]
    fn refuses_malformed_tables() {
        assert!(parse("id\tname\n").is_err());
        assert!(parse("code\tname\nx\tNONE\n").is_err());
        assert!(parse("code\tname\n1\tlower_case\n").is_err());
        assert!(parse("code\tname\n1\tA\n1\tB\n").is_err());
        assert!(parse("code\tname\n1\tA\n2\tA\n").is_err());
        assert!(parse("code\tname\n1 A\n").is_err());
    }
}
