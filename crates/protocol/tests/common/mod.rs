//! Test support shared by the protocol test suites: an independent, schema-driven writer of sample
//! messages. It reads Kafka's JSON message schemas (a tiny JSON parser, since the crate has no JSON
//! dependency) and writes, for any message and version, the wire bytes of a message whose every field
//! holds a deterministic value: the third implementation against which both our generated codec and
//! the `kafka-protocol` crate are checked.

#![allow(dead_code)] // each test crate uses part of this module

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where Kafka's JSON message schemas are: `$STROM_KAFKA_SCHEMAS`, else next to the workspace, where
/// `cargo xtask codegen` reads them. Tests that need them skip, with a notice, when they are absent.
pub fn schema_dir() -> PathBuf {
    std::env::var_os("STROM_KAFKA_SCHEMAS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kafka-protocol-schemas"),
        PathBuf::from,
    )
}

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn array(&self, key: &str) -> &[Json] {
        match self.get(key) {
            Some(Json::Array(items)) => items,
            _ => &[],
        }
    }
}

/// Parses the JSON of a Kafka schema file (whole-line `//` comments allowed).
pub fn parse_json(text: &str) -> Json {
    let cleaned: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let chars: Vec<char> = cleaned.chars().collect();
    let mut at = 0;
    let value = parse_value(&chars, &mut at);
    skip_ws(&chars, &mut at);
    assert_eq!(at, chars.len(), "trailing characters in JSON");
    value
}

fn skip_ws(c: &[char], at: &mut usize) {
    while *at < c.len() && c[*at].is_whitespace() {
        *at += 1;
    }
}

fn parse_value(c: &[char], at: &mut usize) -> Json {
    skip_ws(c, at);
    match c[*at] {
        '{' => {
            *at += 1;
            let mut entries = Vec::new();
            loop {
                skip_ws(c, at);
                if c[*at] == '}' {
                    *at += 1;
                    return Json::Object(entries);
                }
                let Json::Str(key) = parse_value(c, at) else {
                    panic!("object key is not a string")
                };
                skip_ws(c, at);
                assert_eq!(c[*at], ':');
                *at += 1;
                entries.push((key, parse_value(c, at)));
                skip_ws(c, at);
                if c[*at] == ',' {
                    *at += 1;
                }
            }
        }
        '[' => {
            *at += 1;
            let mut items = Vec::new();
            loop {
                skip_ws(c, at);
                if c[*at] == ']' {
                    *at += 1;
                    return Json::Array(items);
                }
                items.push(parse_value(c, at));
                skip_ws(c, at);
                if c[*at] == ',' {
                    *at += 1;
                }
            }
        }
        '"' => {
            *at += 1;
            let mut s = String::new();
            while c[*at] != '"' {
                if c[*at] == '\\' {
                    *at += 1;
                    match c[*at] {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'u' => {
                            let hex: String = c[*at + 1..*at + 5].iter().collect();
                            s.push(
                                char::from_u32(u32::from_str_radix(&hex, 16).unwrap())
                                    .unwrap_or('?'),
                            );
                            *at += 4;
                        }
                        other => s.push(other),
                    }
                } else {
                    s.push(c[*at]);
                }
                *at += 1;
            }
            *at += 1;
            Json::Str(s)
        }
        't' => {
            *at += 4;
            Json::Bool(true)
        }
        'f' => {
            *at += 5;
            Json::Bool(false)
        }
        'n' => {
            *at += 4;
            Json::Null
        }
        _ => {
            let start = *at;
            while *at < c.len() && (c[*at].is_ascii_alphanumeric() || "+-.".contains(c[*at])) {
                *at += 1;
            }
            Json::Number(c[start..*at].iter().collect())
        }
    }
}

/// An inclusive version range from a schema ("none", "3", "3+", "1-4").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub low: i16,
    pub high: i16,
}

impl Versions {
    pub const NONE: Versions = Versions { low: 1, high: 0 };

    pub fn parse(text: Option<&str>) -> Versions {
        let Some(text) = text else {
            return Versions::NONE;
        };
        if text == "none" {
            return Versions::NONE;
        }
        if let Some(low) = text.strip_suffix('+') {
            return Versions {
                low: low.parse().unwrap(),
                high: i16::MAX,
            };
        }
        if let Some((low, high)) = text.split_once('-') {
            return Versions {
                low: low.parse().unwrap(),
                high: high.parse().unwrap(),
            };
        }
        let only = text.parse().unwrap();
        Versions {
            low: only,
            high: only,
        }
    }

    pub fn contains(&self, version: i16) -> bool {
        self.low <= version && version <= self.high
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: String,
    pub versions: Versions,
    pub nullable: Versions,
    pub tagged: Versions,
    pub tag: u32,
    pub default: Option<String>,
    pub flexible: Option<Versions>,
    pub fields: Vec<Field>,
}

impl Field {
    fn from_json(json: &Json) -> Field {
        Field {
            name: json.str("name").unwrap_or_default().to_string(),
            ty: json.str("type").unwrap_or_default().to_string(),
            versions: Versions::parse(json.str("versions")),
            nullable: Versions::parse(json.str("nullableVersions")),
            tagged: Versions::parse(json.str("taggedVersions")),
            tag: match json.get("tag") {
                Some(Json::Number(n)) => n.parse().unwrap(),
                _ => 0,
            },
            default: match json.get("default") {
                Some(Json::Str(s)) => Some(s.clone()),
                Some(Json::Number(n)) => Some(n.clone()),
                Some(Json::Bool(b)) => Some(b.to_string()),
                _ => None,
            },
            flexible: json
                .str("flexibleVersions")
                .map(|v| Versions::parse(Some(v))),
            fields: json.array("fields").iter().map(Field::from_json).collect(),
        }
    }
}

/// One message schema.
#[derive(Debug, Clone)]
pub struct Schema {
    pub name: String,
    pub kind: String,
    pub api_key: Option<i16>,
    pub valid: Versions,
    pub flexible: Versions,
    pub fields: Vec<Field>,
    pub common: HashMap<String, Vec<Field>>,
}

/// All schemas in `dir`, by message name; `None` if the directory is absent.
pub fn load_schemas(dir: &Path) -> Option<HashMap<String, Schema>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut schemas = HashMap::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let json = parse_json(&std::fs::read_to_string(&path).unwrap());
        let schema = Schema {
            name: json.str("name").unwrap_or_default().to_string(),
            kind: json.str("type").unwrap_or_default().to_string(),
            api_key: match json.get("apiKey") {
                Some(Json::Number(n)) => Some(n.parse().unwrap()),
                _ => None,
            },
            valid: Versions::parse(json.str("validVersions")),
            flexible: Versions::parse(json.str("flexibleVersions")),
            fields: json.array("fields").iter().map(Field::from_json).collect(),
            common: json
                .array("commonStructs")
                .iter()
                .map(|s| {
                    (
                        s.str("name").unwrap_or_default().to_string(),
                        s.array("fields").iter().map(Field::from_json).collect(),
                    )
                })
                .collect(),
        };
        schemas.insert(schema.name.clone(), schema);
    }
    Some(schemas)
}

/// Which sample to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// Every field present with a distinct non-default value, arrays of two, tagged fields written.
    Full,
    /// Nullable fields null, arrays empty, numbers zero, tagged fields absent.
    Minimal,
}

struct Writer<'a> {
    schema: &'a Schema,
    version: i16,
    flexible: bool,
    sample: Sample,
    counter: u8,
    /// Where the writer is: field names and array indices.
    path: Vec<String>,
    /// Every value written, by path (see [`sample_with_values`]).
    leaves: Vec<(String, String)>,
    /// The schema default of every primitive field absent from the sample, by path.
    defaults: Vec<(String, String)>,
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

const PRIMITIVES: [&str; 13] = [
    "bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64", "string", "bytes",
    "records", "uuid", "float32",
];

impl Writer<'_> {
    fn record(&mut self, value: String) {
        self.leaves.push((self.path.concat(), value));
    }

    /// Records what a decoder must hold in a primitive field the sample does not carry: the schema's
    /// default, as Kafka's generated Java code defines it (no default: 0, false, "" or the zero UUID;
    /// `null` only when the schema says so).
    fn record_default(&mut self, field: &Field) {
        let default = field.default.as_deref();
        let path = self.path.concat();
        let number = || match default {
            Some(hex) if hex.starts_with("0x") => i64::from_str_radix(&hex[2..], 16).unwrap(),
            Some(text) => text.parse::<i64>().unwrap(),
            None => 0,
        };
        let value = match field.ty.as_str() {
            "bool" => (default == Some("true")).to_string(),
            "int8" | "int16" | "uint16" | "int32" | "uint32" | "int64" => number().to_string(),
            "float64" => format!("{:?}", default.map_or(0.0, |d| d.parse::<f64>().unwrap())),
            "string" => match default {
                Some("null") => "None".to_string(),
                other => format!("{:?}", other.unwrap_or("")),
            },
            "uuid" => {
                for index in 0..16 {
                    self.defaults
                        .push((format!("{path}[{index}]"), "0".to_string()));
                }
                return;
            }
            _ => return,
        };
        self.defaults.push((path, value));
    }

    fn next(&mut self) -> u8 {
        self.counter = self.counter % 100 + 1;
        self.counter
    }

    fn write_struct(&mut self, fields: &[Field], out: &mut Vec<u8>) {
        let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
        for field in fields {
            if !field.versions.contains(self.version) {
                self.path.push(format!(".{}", normalize_name(&field.name)));
                self.record_default(field);
                self.path.pop();
                continue;
            }
            self.path.push(format!(".{}", normalize_name(&field.name)));
            if self.flexible && field.tagged.contains(self.version) {
                if self.sample == Sample::Full {
                    let mut payload = Vec::new();
                    self.write_field(field, true, &mut payload);
                    tagged.push((field.tag, payload));
                } else {
                    self.record_default(field);
                }
            } else {
                self.write_field(field, false, out);
            }
            self.path.pop();
        }
        if self.flexible {
            tagged.sort_by_key(|(tag, _)| *tag);
            put_uvarint(out, tagged.len() as u32);
            for (tag, payload) in tagged {
                put_uvarint(out, tag);
                put_uvarint(out, payload.len() as u32);
                out.extend_from_slice(&payload);
            }
        }
    }

    fn struct_fields<'f>(&'f self, field: &'f Field, ty: &str) -> &'f [Field] {
        if field.fields.is_empty() {
            self.schema
                .common
                .get(ty)
                .unwrap_or_else(|| panic!("{}: unknown struct type {ty}", self.schema.name))
        } else {
            &field.fields
        }
    }

    fn put_len(&self, out: &mut Vec<u8>, len: Option<usize>, compact: bool, short: bool) {
        match (len, compact) {
            (None, true) => put_uvarint(out, 0),
            (Some(n), true) => put_uvarint(out, n as u32 + 1),
            (None, false) if short => out.extend_from_slice(&(-1i16).to_be_bytes()),
            (None, false) => out.extend_from_slice(&(-1i32).to_be_bytes()),
            (Some(n), false) if short => out.extend_from_slice(&(n as i16).to_be_bytes()),
            (Some(n), false) => out.extend_from_slice(&(n as i32).to_be_bytes()),
        }
    }

    fn write_field(&mut self, field: &Field, tagged: bool, out: &mut Vec<u8>) {
        let nullable = field.nullable.contains(self.version);
        let compact = self.flexible && field.flexible.is_none_or(|f| f.contains(self.version));
        let null = nullable && self.sample == Sample::Minimal;
        if let Some(element) = field.ty.strip_prefix("[]") {
            let count = match (null, self.sample) {
                (true, _) => None,
                (false, Sample::Full) => Some(2),
                (false, Sample::Minimal) => Some(0),
            };
            self.put_len(out, count, compact, false);
            if count.is_none() {
                self.record("None".to_string());
            }
            for index in 0..count.unwrap_or(0) {
                self.path.push(format!("[{index}]"));
                if PRIMITIVES.contains(&element) {
                    self.write_primitive(element, field, tagged, false, compact, out);
                } else {
                    let fields = self.struct_fields(field, element).to_vec();
                    self.write_struct(&fields, out);
                }
                self.path.pop();
            }
        } else if PRIMITIVES.contains(&field.ty.as_str()) {
            let ty = field.ty.clone();
            self.write_primitive(&ty, field, tagged, null, compact, out);
        } else {
            let fields = self.struct_fields(field, &field.ty).to_vec();
            if nullable {
                if null {
                    out.push(0xff);
                    self.record("None".to_string());
                    return;
                }
                out.push(1);
            }
            self.write_struct(&fields, out);
        }
    }

    fn write_primitive(
        &mut self,
        ty: &str,
        field: &Field,
        tagged: bool,
        null: bool,
        compact: bool,
        out: &mut Vec<u8>,
    ) {
        let full = self.sample == Sample::Full;
        let mut n = if full { i64::from(self.next()) } else { 0 };
        // A tagged field equal to its default is not written back: keep samples off the default.
        if tagged {
            let default = field.default.as_deref().unwrap_or("0");
            let default = if let Some(hex) = default.strip_prefix("0x") {
                i64::from_str_radix(hex, 16).unwrap_or(0)
            } else {
                default.parse::<i64>().unwrap_or(0)
            };
            if n == default {
                n += 1;
            }
        }
        match ty {
            "bool" => {
                let default_true = field.default.as_deref() == Some("true");
                let value = full != (tagged && default_true);
                out.push(u8::from(value));
                self.record(value.to_string());
            }
            "int8" | "int16" | "uint16" | "int32" | "uint32" | "int64" => {
                match ty {
                    "int8" => out.push(n as u8),
                    "int16" | "uint16" => out.extend_from_slice(&(n as i16).to_be_bytes()),
                    "int32" | "uint32" => out.extend_from_slice(&(n as i32).to_be_bytes()),
                    _ => out.extend_from_slice(&n.to_be_bytes()),
                }
                self.record(n.to_string());
            }
            "float64" => {
                out.extend_from_slice(&(n as f64 + 0.5).to_be_bytes());
                self.record(format!("{:?}", n as f64 + 0.5));
            }
            "uuid" => {
                out.extend_from_slice(&[n as u8; 16]);
                for index in 0..16 {
                    self.leaves
                        .push((format!("{}[{index}]", self.path.concat()), n.to_string()));
                }
            }
            "string" => {
                if null {
                    self.put_len(out, None, compact, true);
                    self.record("None".to_string());
                } else {
                    let text = if full { format!("s{n}") } else { String::new() };
                    self.put_len(out, Some(text.len()), compact, true);
                    out.extend_from_slice(text.as_bytes());
                    self.record(format!("{text:?}"));
                }
            }
            "bytes" | "records" => {
                if null {
                    self.put_len(out, None, compact, false);
                    self.record("None".to_string());
                } else {
                    let len = if full { (n % 7 + 1) as usize } else { 0 };
                    let data = vec![n as u8; len];
                    self.put_len(out, Some(data.len()), compact, false);
                    out.extend_from_slice(&data);
                }
            }
            other => panic!("unsupported primitive {other}"),
        }
    }
}

/// The wire bytes of a sample `schema` message at `version`.
pub fn sample_bytes(schema: &Schema, version: i16, sample: Sample) -> Vec<u8> {
    sample_with_values(schema, version, sample).bytes
}

/// What [`sample_with_values`] wrote: the bytes, and the values a decoder must then hold.
pub struct SampleMessage {
    pub bytes: Vec<u8>,
    /// Every value written, by path (`.field[index].field`, names lowercased without underscores,
    /// values as `Debug` shows them; bytes fields are not listed).
    pub written: Vec<(String, String)>,
    /// The schema default of every primitive field the sample does not carry (absent at this version,
    /// or tagged and left out), by path.
    pub defaults: Vec<(String, String)>,
}

/// A sample message of `schema` at `version`, with the values it carries.
pub fn sample_with_values(schema: &Schema, version: i16, sample: Sample) -> SampleMessage {
    let mut writer = Writer {
        schema,
        version,
        flexible: schema.flexible.contains(version),
        sample,
        counter: 0,
        path: Vec::new(),
        leaves: Vec::new(),
        defaults: Vec::new(),
    };
    let mut bytes = Vec::new();
    writer.write_struct(&schema.fields, &mut bytes);
    SampleMessage {
        bytes,
        written: writer.leaves,
        defaults: writer.defaults,
    }
}

/// A field name as compared across codecs: `TopicName`, `topic_name` and `r#type` become `topicname`
/// and `type`.
pub fn normalize_name(name: &str) -> String {
    name.trim_start_matches("r#")
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The leaves of a value's `Debug` rendering by path, in the form [`sample_with_values`] lists them:
/// newtypes and `Some` are transparent, hyphenated UUIDs become 16 indexed bytes.
pub fn debug_leaves(text: &str) -> HashMap<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut leaves = HashMap::new();
    let mut at = 0;
    debug_value(&chars, &mut at, String::new(), &mut leaves);
    leaves
}

fn hyphenated_uuid_at(chars: &[char], at: usize) -> Option<[u8; 16]> {
    let text: String = chars.get(at..at + 36)?.iter().collect();
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lengths != [8, 4, 4, 4, 12]
        || !groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    let hex = groups.concat();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

fn debug_value(c: &[char], at: &mut usize, path: String, leaves: &mut HashMap<String, String>) {
    skip_ws(c, at);
    if let Some(uuid) = hyphenated_uuid_at(c, *at) {
        for (index, byte) in uuid.iter().enumerate() {
            leaves.insert(format!("{path}[{index}]"), byte.to_string());
        }
        *at += 36;
        return;
    }
    let start = *at;
    match c[*at] {
        '"' => {
            *at += 1;
            while c[*at] != '"' {
                *at += if c[*at] == '\\' { 2 } else { 1 };
            }
            *at += 1;
            leaves.insert(path, c[start..*at].iter().collect());
        }
        'b' if c.get(*at + 1) == Some(&'"') => {
            *at += 1;
            debug_value(c, at, path.clone(), leaves);
            leaves.insert(path, "<bytes>".to_string());
        }
        '[' => {
            *at += 1;
            let mut index = 0;
            loop {
                skip_ws(c, at);
                if c[*at] == ']' {
                    *at += 1;
                    return;
                }
                debug_value(c, at, format!("{path}[{index}]"), leaves);
                index += 1;
                skip_ws(c, at);
                if c[*at] == ',' {
                    *at += 1;
                }
            }
        }
        '{' => {
            // A map: entries are keyed by their key's rendering.
            *at += 1;
            loop {
                skip_ws(c, at);
                if c[*at] == '}' {
                    *at += 1;
                    return;
                }
                let mut key = HashMap::new();
                debug_value(c, at, String::new(), &mut key);
                let key = key.into_values().collect::<Vec<_>>().join(",");
                skip_ws(c, at);
                *at += 1; // ':'
                debug_value(c, at, format!("{path}{{{key}}}"), leaves);
                skip_ws(c, at);
                if c[*at] == ',' {
                    *at += 1;
                }
            }
        }
        ch if ch.is_ascii_digit() || ch == '-' => {
            *at += 1;
            while *at < c.len()
                && (c[*at].is_ascii_alphanumeric() || c[*at] == '.' || c[*at] == '-')
            {
                *at += 1;
            }
            leaves.insert(path, c[start..*at].iter().collect());
        }
        _ => {
            while *at < c.len()
                && (c[*at].is_alphanumeric() || c[*at] == '_' || c[*at] == '#' || c[*at] == ':')
            {
                *at += 1;
            }
            let word: String = c[start..*at].iter().collect();
            skip_ws(c, at);
            match c.get(*at) {
                Some('{') => {
                    *at += 1;
                    loop {
                        skip_ws(c, at);
                        if c[*at] == '}' {
                            *at += 1;
                            return;
                        }
                        let name_start = *at;
                        while c[*at] != ':' {
                            *at += 1;
                        }
                        let name: String = c[name_start..*at].iter().collect();
                        *at += 1;
                        debug_value(
                            c,
                            at,
                            format!("{path}.{}", normalize_name(name.trim())),
                            leaves,
                        );
                        skip_ws(c, at);
                        if c[*at] == ',' {
                            *at += 1;
                        }
                    }
                }
                Some('(') => {
                    *at += 1;
                    debug_value(c, at, path, leaves);
                    skip_ws(c, at);
                    *at += 1; // ')'
                }
                _ => {
                    leaves.insert(path, word);
                }
            }
        }
    }
}
