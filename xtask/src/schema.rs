//! Kafka's JSON message schemas, parsed into a model the code generator can walk: messages, their
//! (nested and common) struct types, fields, field types and version ranges.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// An inclusive range of versions; `high == None` means open-ended ("3+").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub low: i16,
    pub high: Option<i16>,
}

impl VersionRange {
    /// Parses "0+", "3-5", "7"; "none" (and an empty string) is `None`.
    pub fn parse(text: &str) -> Result<Option<Self>> {
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(None);
        }
        let range = if let Some(low) = text.strip_suffix('+') {
            Self {
                low: low
                    .trim()
                    .parse()
                    .with_context(|| format!("bad version range {text:?}"))?,
                high: None,
            }
        } else if let Some((low, high)) = text.split_once('-') {
            Self {
                low: low
                    .trim()
                    .parse()
                    .with_context(|| format!("bad version range {text:?}"))?,
                high: Some(
                    high.trim()
                        .parse()
                        .with_context(|| format!("bad version range {text:?}"))?,
                ),
            }
        } else {
            let only = text
                .parse()
                .with_context(|| format!("bad version range {text:?}"))?;
            Self {
                low: only,
                high: Some(only),
            }
        };
        Ok(Some(range))
    }

    /// The highest version, given the message's highest valid version for open ranges.
    pub fn high_or(&self, max: i16) -> i16 {
        self.high.unwrap_or(max)
    }
}

/// A primitive wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
}

impl Primitive {
    pub fn rust_type(self) -> &'static str {
        match self {
            Primitive::Bool => "bool",
            Primitive::Int8 => "i8",
            Primitive::Int16 => "i16",
            Primitive::Uint16 => "u16",
            Primitive::Int32 => "i32",
            Primitive::Uint32 => "u32",
            Primitive::Int64 => "i64",
            Primitive::Float64 => "f64",
        }
    }

    /// The codec function suffix: `get_i32` / `put_i32`.
    pub fn codec_suffix(self) -> &'static str {
        self.rust_type()
    }
}

/// The type of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    Primitive(Primitive),
    Uuid,
    String,
    Bytes,
    Records,
    Struct(String),
    Array(Box<FieldType>),
}

impl FieldType {
    fn parse(text: &str) -> Self {
        if let Some(element) = text.strip_prefix("[]") {
            return FieldType::Array(Box::new(FieldType::parse(element)));
        }
        match text {
            "bool" => FieldType::Primitive(Primitive::Bool),
            "int8" => FieldType::Primitive(Primitive::Int8),
            "int16" => FieldType::Primitive(Primitive::Int16),
            "uint16" => FieldType::Primitive(Primitive::Uint16),
            "int32" => FieldType::Primitive(Primitive::Int32),
            "uint32" => FieldType::Primitive(Primitive::Uint32),
            "int64" => FieldType::Primitive(Primitive::Int64),
            "float64" => FieldType::Primitive(Primitive::Float64),
            "uuid" => FieldType::Uuid,
            "string" => FieldType::String,
            "bytes" => FieldType::Bytes,
            "records" => FieldType::Records,
            other => FieldType::Struct(other.to_string()),
        }
    }
}

/// One field of a struct.
#[derive(Debug, Clone)]
pub struct Field {
    /// The schema's name, e.g. `TopicData`.
    pub name: String,
    pub field_type: FieldType,
    /// Versions in which the field is present (`None`: never).
    pub versions: Option<VersionRange>,
    /// Versions in which the field may be null (`None`: never).
    pub nullable_versions: Option<VersionRange>,
    /// The field's own flexible versions, when it overrides the message's (RequestHeader.ClientId).
    pub flexible_override: Option<Option<VersionRange>>,
    /// Tag number, for tagged fields.
    pub tag: Option<u32>,
    pub tagged_versions: Option<VersionRange>,
    /// The schema's default, as text ("-1", "null", "true", "0x7fffffff", "").
    pub default: Option<String>,
    pub about: String,
}

impl Field {
    /// Whether the field's Rust type is an `Option`.
    pub fn is_option(&self) -> bool {
        self.nullable_versions.is_some() || self.field_type == FieldType::Records
    }

    /// Whether the schema default is null.
    pub fn default_is_null(&self) -> bool {
        self.field_type == FieldType::Records || self.default.as_deref() == Some("null")
    }
}

/// A struct type: a message's top level, a nested struct or a common struct.
#[derive(Debug, Clone)]
pub struct StructDef {
    pub name: String,
    pub fields: Vec<Field>,
}

/// The kind of a schema file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Response,
    Header,
    Data,
    Metadata,
}

/// One schema file.
#[derive(Debug, Clone)]
pub struct Message {
    pub name: String,
    pub kind: MessageKind,
    pub api_key: Option<i16>,
    pub valid_versions: VersionRange,
    pub flexible_versions: Option<VersionRange>,
    pub listeners: Vec<String>,
    pub latest_version_unstable: bool,
    /// All struct types: the top-level struct first, then nested and common structs, each once.
    pub structs: Vec<StructDef>,
}

impl Message {
    pub fn min_version(&self) -> i16 {
        self.valid_versions.low
    }

    pub fn max_version(&self) -> i16 {
        self.valid_versions.high.unwrap_or(self.valid_versions.low)
    }
}

/// Removes `//` comments (outside string literals) from a JSON-with-comments text.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for skipped in chars.by_ref() {
                if skipped == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads and parses every `*.json` schema in `dir`, sorted by file name, with the Strom
/// extensions in `extensions` (a file of the same name there) merged in.
pub fn load_dir(dir: &Path, extensions: Option<&Path>) -> Result<Vec<Message>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("reading schema directory {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut json: Value = serde_json::from_str(&strip_comments(&text))
                .with_context(|| format!("parsing {}", path.display()))?;
            let extension = extensions
                .zip(path.file_name())
                .map(|(dir, name)| dir.join(name))
                .filter(|extension| extension.is_file());
            if let Some(extension) = extension {
                std::fs::read_to_string(&extension)
                    .map_err(anyhow::Error::from)
                    .and_then(|text| extend(&mut json, &text))
                    .with_context(|| format!("applying {}", extension.display()))?;
            }
            parse_message(&json).with_context(|| format!("parsing {}", path.display()))
        })
        .collect()
}

/// Merges a Strom extension into a Kafka schema: the file is
/// `{"structs": [{"name": S, "fields": [...]}]}`, and each field list is appended to struct `S`
/// (the message itself, or a struct defined inline in it). Extensions add tagged fields only, so
/// Kafka's clients, which skip tags they do not know, read the message as before.
fn extend(json: &mut Value, extension: &str) -> Result<()> {
    let extension: Value = serde_json::from_str(&strip_comments(extension))?;
    let structs = extension
        .get("structs")
        .and_then(Value::as_array)
        .context("an extension lists \"structs\"")?;
    for added in structs {
        let name = str_attr(added, "name")?;
        let fields = added
            .get("fields")
            .and_then(Value::as_array)
            .context("an extended struct lists \"fields\"")?;
        if fields.iter().any(|field| field.get("tag").is_none()) {
            bail!("extension fields of {name} must be tagged");
        }
        let target = if json.get("name").and_then(Value::as_str) == Some(name) {
            json.get_mut("fields")
        } else {
            find_struct_fields(json.get_mut("fields"), name)
        };
        target
            .and_then(Value::as_array_mut)
            .with_context(|| format!("no struct {name} to extend"))?
            .extend(fields.iter().cloned());
    }
    Ok(())
}

/// The field list of the struct `name` defined inline somewhere in `fields`.
fn find_struct_fields<'a>(fields: Option<&'a mut Value>, name: &str) -> Option<&'a mut Value> {
    for field in fields?.as_array_mut()? {
        let defines = field
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|ty| ty.trim_start_matches("[]") == name);
        if defines && field.get("fields").is_some() {
            return field.get_mut("fields");
        }
        if let Some(found) = find_struct_fields(field.get_mut("fields"), name) {
            return Some(found);
        }
    }
    None
}

fn parse_message(json: &Value) -> Result<Message> {
    let name = str_attr(json, "name")?.to_string();
    let kind = match str_attr(json, "type")? {
        "request" => MessageKind::Request,
        "response" => MessageKind::Response,
        "header" => MessageKind::Header,
        "data" => MessageKind::Data,
        "metadata" => MessageKind::Metadata,
        other => bail!("unknown message type {other:?}"),
    };
    let api_key = json
        .get("apiKey")
        .map(|key| {
            key.as_i64()
                .and_then(|k| i16::try_from(k).ok())
                .context("apiKey is not an int16")
        })
        .transpose()?;
    let valid_versions = VersionRange::parse(str_attr(json, "validVersions")?)?
        .context("validVersions is \"none\"")?;
    let flexible_versions = match json.get("flexibleVersions") {
        Some(value) => {
            VersionRange::parse(value.as_str().context("flexibleVersions is not a string")?)?
        }
        None => None,
    };
    let listeners = json
        .get("listeners")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let latest_version_unstable = json
        .get("latestVersionUnstable")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let mut structs = Vec::new();
    define_struct(&mut structs, &name, json.get("fields"))?;
    if let Some(common) = json.get("commonStructs").and_then(Value::as_array) {
        for common_struct in common {
            define_struct(
                &mut structs,
                str_attr(common_struct, "name")?,
                common_struct.get("fields"),
            )?;
        }
    }
    Ok(Message {
        name,
        kind,
        api_key,
        valid_versions,
        flexible_versions,
        listeners,
        latest_version_unstable,
        structs,
    })
}

/// Adds a struct type unless one of that name is already known (the first definition wins).
/// Parses a struct type's fields and records it, after any struct of the same name already known
/// (the first definition wins). Structs are listed in pre-order: a struct before its nested ones.
fn define_struct(structs: &mut Vec<StructDef>, name: &str, fields: Option<&Value>) -> Result<()> {
    if structs.iter().any(|known| known.name == name) {
        return Ok(());
    }
    let index = structs.len();
    structs.push(StructDef {
        name: name.to_string(),
        fields: Vec::new(),
    });
    let parsed = parse_fields(fields, structs)?;
    structs[index].fields = parsed;
    Ok(())
}

fn parse_fields(fields: Option<&Value>, structs: &mut Vec<StructDef>) -> Result<Vec<Field>> {
    let Some(fields) = fields else {
        return Ok(Vec::new());
    };
    let fields = fields.as_array().context("\"fields\" is not an array")?;
    fields
        .iter()
        .map(|field| parse_field(field, structs))
        .collect()
}

fn parse_field(json: &Value, structs: &mut Vec<StructDef>) -> Result<Field> {
    let name = str_attr(json, "name")?.to_string();
    let type_text = str_attr(json, "type")?;
    let field_type = FieldType::parse(type_text);
    if json.get("fields").is_some() {
        define_struct(
            structs,
            type_text.trim_start_matches("[]"),
            json.get("fields"),
        )?;
    }
    let optional_range = |key: &str| -> Result<Option<VersionRange>> {
        match json.get(key) {
            Some(value) => VersionRange::parse(
                value
                    .as_str()
                    .with_context(|| format!("{key} is not a string"))?,
            ),
            None => Ok(None),
        }
    };
    let versions = VersionRange::parse(str_attr(json, "versions")?)?;
    let nullable_versions = optional_range("nullableVersions")?;
    let tagged_versions = optional_range("taggedVersions")?;
    let flexible_override = match json.get("flexibleVersions") {
        Some(_) => Some(optional_range("flexibleVersions")?),
        None => None,
    };
    let tag = json
        .get("tag")
        .map(|tag| {
            let number = match tag {
                Value::String(text) => text.trim().parse::<u64>().ok(),
                other => other.as_u64(),
            };
            number
                .and_then(|t| u32::try_from(t).ok())
                .context("tag is not a u32")
        })
        .transpose()?;
    let default = json.get("default").map(|value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    let about = json
        .get("about")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Field {
        name: name.clone(),
        field_type,
        versions,
        nullable_versions,
        flexible_override,
        tag,
        tagged_versions: if tag.is_some() { tagged_versions } else { None },
        default,
        about,
    })
}

fn str_attr<'a>(json: &'a Value, key: &str) -> Result<&'a str> {
    json.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("missing string attribute {key:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_append_tagged_fields_to_inline_structs() {
        let mut json: Value = serde_json::from_str(
            r#"{"name": "R", "fields": [{"name": "Items", "type": "[]Item", "fields": [
                {"name": "A", "type": "int32", "versions": "0+"}]}]}"#,
        )
        .unwrap();
        let tagged = r#"{"structs": [{"name": "Item", "fields": [{"name": "B", "type": "bool",
            "versions": "0+", "taggedVersions": "0+", "tag": 10000}]}]}"#;
        extend(&mut json, tagged).unwrap();
        let names: Vec<&str> = json["fields"][0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["A", "B"]);
        let untagged = r#"{"structs": [{"name": "R", "fields": [{"name": "C", "type": "bool",
            "versions": "0+"}]}]}"#;
        assert!(extend(&mut json, untagged).is_err());
        let unknown = r#"{"structs": [{"name": "Nope", "fields": []}]}"#;
        assert!(extend(&mut json, unknown).is_err());
    }

    #[test]
    fn comments_are_stripped_outside_strings_only() {
        let text = "{ // a comment\n \"about\": \"see http://x//y\" // trailing\n}";
        let json: Value = serde_json::from_str(&strip_comments(text)).unwrap();
        assert_eq!(json["about"], "see http://x//y");
    }

    #[test]
    fn version_ranges_parse() {
        assert_eq!(
            VersionRange::parse("3+").unwrap(),
            Some(VersionRange { low: 3, high: None })
        );
        assert_eq!(
            VersionRange::parse("1-4").unwrap(),
            Some(VersionRange {
                low: 1,
                high: Some(4)
            })
        );
        assert_eq!(
            VersionRange::parse("7").unwrap(),
            Some(VersionRange {
                low: 7,
                high: Some(7)
            })
        );
        assert_eq!(VersionRange::parse("none").unwrap(), None);
    }
}
