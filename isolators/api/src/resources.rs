//! The open resource contract: a container's resources are a map of
//! per-isolator sections, `{"cpu": {"cpus": 0.5}, "my-plugin": {...}}`.
//!
//! Each isolator owns its section: the schema (a serde type it defines), its
//! validation, how an update merges into it ([`Isolator::merge_resources`]),
//! and the flat `/v1` keys it answers to ([`ResourceSection::flat_keys`]).
//! The agent knows no section's fields: it only routes sections to their
//! isolators with a [`ResourceTable`].
//!
//! [`Isolator::merge_resources`]: crate::Isolator::merge_resources

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::IsolatorError;

/// One section of a container's resources: a JSON object whose schema its
/// isolator owns.
///
/// ```
/// let section: berth_isolator::Section = serde_json::from_str(r#"{"tokens": 3}"#).unwrap();
/// assert_eq!(section["tokens"], 3);
/// ```
pub type Section = Map<String, Value>;

/// The resources a container asks for: one [`Section`] per isolator.
///
/// An isolator reads its own section as a typed value with
/// [`Resources::section`]; a wrong value is an
/// [`IsolatorError::InvalidConfig`] naming the field as
/// `resources.<section>.<field>`, which the agent answers with a 400.
///
/// ```
/// use berth_isolator::Resources;
/// use serde::Deserialize;
///
/// #[derive(Debug, Default, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Tokens {
///     tokens: Option<u32>,
/// }
///
/// let resources: Resources =
///     serde_json::from_str(r#"{"example": {"tokens": 3}}"#).unwrap();
/// let mine: Tokens = resources.section("example").unwrap();
/// assert_eq!(mine.tokens, Some(3));
/// // An absent section is the type's default.
/// assert_eq!(resources.section::<Tokens>("other").unwrap().tokens, None);
///
/// let bad: Resources = serde_json::from_str(r#"{"example": {"tokens": "x"}}"#).unwrap();
/// let err = bad.section::<Tokens>("example").unwrap_err();
/// assert!(err.to_string().starts_with("invalid resources.example.tokens"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Resources {
    sections: BTreeMap<String, Section>,
}

impl Resources {
    /// No resources asked for.
    pub fn new() -> Self {
        Resources::default()
    }

    /// Resources with one section, set from a typed value (fields that
    /// serialize to nothing are left out).
    ///
    /// ```
    /// use berth_isolator::Resources;
    /// let r = Resources::with_section("example", &serde_json::json!({"tokens": 3}));
    /// assert_eq!(r.raw_section("example").unwrap()["tokens"], 3);
    /// ```
    pub fn with_section<T: Serialize>(name: &str, value: &T) -> Self {
        let mut resources = Resources::new();
        resources.set_section(name, value);
        resources
    }

    /// Reads section `name` as `T`; an absent section is `T::default()`.
    /// A value that does not fit `T` is refused naming the field
    /// (`resources.<name>.<path>`).
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, IsolatorError> {
        let Some(section) = self.sections.get(name) else {
            return Ok(T::default());
        };
        let value = Value::Object(section.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path.is_empty() || path == "." {
                format!("resources.{name}")
            } else {
                format!("resources.{name}.{path}")
            };
            IsolatorError::invalid(field, e.into_inner().to_string())
        })
    }

    /// Replaces section `name` with `value` serialized; a value that
    /// serializes to an empty object (or not to an object) removes the
    /// section. A non-finite float serializes as `null`: the section's type
    /// decides what a `null` means.
    pub fn set_section<T: Serialize>(&mut self, name: &str, value: &T) {
        match serde_json::to_value(value) {
            Ok(Value::Object(map)) if !map.is_empty() => {
                self.sections.insert(name.to_string(), map);
            }
            _ => {
                self.sections.remove(name);
            }
        }
    }

    /// Section `name` as JSON, if asked for.
    pub fn raw_section(&self, name: &str) -> Option<&Section> {
        self.sections.get(name)
    }

    /// Replaces (or with an empty object removes) section `name`.
    pub fn set_raw_section(&mut self, name: &str, section: Section) {
        if section.is_empty() {
            self.sections.remove(name);
        } else {
            self.sections.insert(name.to_string(), section);
        }
    }

    /// The sections asked for, by name.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.sections.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// True when no section is asked for.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }
}

/// An isolator's typed section: its name, its flat `/v1` keys, and the
/// reads and writes every section type needs, from two constants.
///
/// ```
/// use berth_isolator::{Resources, TypedSection};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Tokens {
///     #[serde(default, skip_serializing_if = "Option::is_none")]
///     tokens: Option<u32>,
/// }
///
/// impl TypedSection for Tokens {
///     const SECTION: &'static str = "example";
/// }
///
/// let resources = Tokens { tokens: Some(3) }.into_resources();
/// assert_eq!(resources.raw_section("example").unwrap()["tokens"], 3);
/// assert_eq!(Tokens::of(&resources).unwrap(), Tokens { tokens: Some(3) });
/// assert_eq!(Tokens::section().name, "example");
/// ```
pub trait TypedSection: Serialize + DeserializeOwned + Default {
    /// The section's key in `resources`.
    const SECTION: &'static str;
    /// Fields also accepted at the top level of a `/v1` request
    /// ([`ResourceSection::flat_keys`]).
    const FLAT_KEYS: &'static [&'static str] = &[];

    /// The section as its isolator declares it
    /// ([`Isolator::resource_section`](crate::Isolator::resource_section)).
    fn section() -> ResourceSection {
        ResourceSection::new(Self::SECTION).with_flat_keys(Self::FLAT_KEYS)
    }

    /// This section of `resources` ([`Resources::section`]).
    fn of(resources: &Resources) -> Result<Self, IsolatorError> {
        resources.section(Self::SECTION)
    }

    /// Resources with only this section.
    fn into_resources(self) -> Resources {
        Resources::with_section(Self::SECTION, &self)
    }

    /// Reads a raw section (as [`Isolator::merge_resources`] gets them).
    ///
    /// [`Isolator::merge_resources`]: crate::Isolator::merge_resources
    fn from_section(section: &Section) -> Result<Self, IsolatorError> {
        Self::of(&Resources::with_section(Self::SECTION, section))
    }

    /// This value as a raw section.
    fn to_section(&self) -> Section {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Section::new(),
        }
    }
}

/// The merge of a section whose fields are fixed at launch: an update
/// giving any of them is refused naming `field`.
///
/// ```
/// use berth_isolator::{fixed_at_launch, Section};
/// let current = serde_json::json!({"handle": 3});
/// let current = current.as_object().unwrap();
/// assert_eq!(&fixed_at_launch("resources.handle", current, &Section::new()).unwrap(), current);
/// let update = serde_json::json!({"handle": 4});
/// assert!(fixed_at_launch("resources.handle", current, update.as_object().unwrap()).is_err());
/// ```
pub fn fixed_at_launch(
    field: &str,
    current: &Section,
    update: &Section,
) -> Result<Section, IsolatorError> {
    let asks = |v: &Value| match v {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        _ => true,
    };
    if update.values().any(asks) {
        return Err(IsolatorError::invalid(
            field,
            "cannot be changed while the container runs",
        ));
    }
    Ok(current.clone())
}

/// What an isolator declares about its resource section (see
/// [`Isolator::resource_section`](crate::Isolator::resource_section)).
///
/// `flat_keys` are the fields of the section that a `/v1` request may also
/// give at the top level of `resources` (`{"cpus": 0.5}` for
/// `{"cpu": {"cpus": 0.5}}`): the built-ins keep the API's first shape
/// working this way. A new isolator leaves it empty.
///
/// ```
/// use berth_isolator::ResourceSection;
/// let cpu = ResourceSection::new("cpu").with_flat_keys(&["cpus"]);
/// assert_eq!(cpu.name, "cpu");
/// assert_eq!(cpu.flat_keys, ["cpus"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSection {
    /// The section's key in `resources`.
    pub name: String,
    /// Fields of the section also accepted at the top level of `resources`.
    pub flat_keys: Vec<String>,
}

impl ResourceSection {
    /// A section named `name`, without flat keys.
    pub fn new(name: impl Into<String>) -> Self {
        ResourceSection {
            name: name.into(),
            flat_keys: Vec::new(),
        }
    }

    /// The section with these flat `/v1` keys.
    pub fn with_flat_keys(mut self, keys: &[&str]) -> Self {
        self.flat_keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }
}

/// The default merge of a live update into a section: every field in
/// `update` replaces the current one, fields left out keep their value.
///
/// ```
/// use berth_isolator::merge_fields;
/// let current = serde_json::json!({"a": 1, "b": 2});
/// let update = serde_json::json!({"b": 3});
/// let merged = merge_fields(current.as_object().unwrap(), update.as_object().unwrap());
/// assert_eq!(serde_json::Value::Object(merged), serde_json::json!({"a": 1, "b": 3}));
/// ```
pub fn merge_fields(current: &Section, update: &Section) -> Section {
    let mut merged = current.clone();
    for (key, value) in update {
        merged.insert(key.clone(), value.clone());
    }
    merged
}

/// How a request gave its resources: which sections came as flat `/v1`
/// keys. Used to name a refused field the way the request wrote it.
/// Made by [`ResourceTable::from_request`]; see its example.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestForm {
    flat: BTreeSet<String>,
    /// The request key that brought each section (a flat key or the
    /// section's own name), for messages about the whole section.
    keys: BTreeMap<String, String>,
}

impl RequestForm {
    /// The request field (`resources.<key>`) that asked for `section`.
    pub fn field_of(&self, section: &str) -> String {
        format!(
            "resources.{}",
            self.keys.get(section).map_or(section, String::as_str)
        )
    }
}

/// The sections the agent's isolators declare, and the conversions between
/// a request's `resources` (sectioned, flat `/v1`, or both) and
/// [`Resources`].
///
/// ```
/// use berth_isolator::{ResourceSection, ResourceTable};
/// let table = ResourceTable::new([
///     ResourceSection::new("cpu").with_flat_keys(&["cpus"]),
///     ResourceSection::new("example"),
/// ]);
/// let request = serde_json::json!({"cpus": 0.5, "example": {"tokens": 3}});
/// let (resources, form) = table.from_request(request.as_object().unwrap()).unwrap();
/// assert_eq!(resources.raw_section("cpu").unwrap()["cpus"], 0.5);
/// // Flat where the request could be flat: the `/v1` answer keeps its shape.
/// assert_eq!(serde_json::Value::Object(table.to_v1(&resources)), request);
/// // Errors name the field as the request wrote it.
/// assert_eq!(form.field_of("cpu"), "resources.cpus");
/// assert_eq!(table.request_field("resources.cpu.cpus", &form), "resources.cpus");
/// assert!(table.from_request(serde_json::json!({"cpu": 1}).as_object().unwrap()).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceTable {
    sections: Vec<ResourceSection>,
}

impl ResourceTable {
    /// A table of these sections.
    pub fn new(sections: impl IntoIterator<Item = ResourceSection>) -> Self {
        ResourceTable {
            sections: sections.into_iter().collect(),
        }
    }

    /// The declared sections.
    pub fn sections(&self) -> &[ResourceSection] {
        &self.sections
    }

    fn section_of_flat(&self, key: &str) -> Option<&ResourceSection> {
        self.sections
            .iter()
            .find(|s| s.flat_keys.iter().any(|k| k == key))
    }

    fn is_section(&self, key: &str) -> bool {
        self.sections.iter().any(|s| s.name == key)
    }

    /// Reads a request's `resources` object. A key whose value is an object
    /// and that names a section is that section; any other key must be a
    /// section's flat key. Anything else is refused naming
    /// `resources.<key>`.
    pub fn from_request(
        &self,
        request: &Map<String, Value>,
    ) -> Result<(Resources, RequestForm), IsolatorError> {
        let mut resources = Resources::new();
        let mut form = RequestForm::default();
        for (key, value) in request {
            if let (true, Value::Object(section)) = (self.is_section(key), value) {
                let mut merged = resources.raw_section(key).cloned().unwrap_or_default();
                for (field, v) in section {
                    if merged.insert(field.clone(), v.clone()).is_some() {
                        return Err(IsolatorError::invalid(
                            format!("resources.{key}.{field}"),
                            "given twice (flat and in its section)",
                        ));
                    }
                }
                resources.sections.insert(key.clone(), merged);
                form.keys.entry(key.clone()).or_insert_with(|| key.clone());
            } else if let Some(section) = self.section_of_flat(key) {
                let name = section.name.clone();
                let entry = resources.sections.entry(name.clone()).or_default();
                if entry.insert(key.clone(), value.clone()).is_some() {
                    return Err(IsolatorError::invalid(
                        format!("resources.{key}"),
                        "given twice (flat and in its section)",
                    ));
                }
                form.flat.insert(name.clone());
                form.keys.insert(name, key.clone());
            } else {
                let known: Vec<&str> = self
                    .sections
                    .iter()
                    .flat_map(|s| {
                        std::iter::once(s.name.as_str())
                            .chain(s.flat_keys.iter().map(String::as_str))
                    })
                    .collect();
                return Err(IsolatorError::invalid(
                    format!("resources.{key}"),
                    format!(
                        "unknown resource (this agent's isolators take: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        // `{"cpus": null}` asks for nothing, as it did when resources were
        // a struct of optional fields.
        for section in resources.sections.values_mut() {
            section.retain(|_, v| !v.is_null());
        }
        resources.sections.retain(|_, s| !s.is_empty());
        Ok((resources, form))
    }

    /// Reads a stored `resources` object (from a record or a bundle): like
    /// [`ResourceTable::from_request`], but keys no isolator declares any
    /// more are kept as sections when they are objects and dropped
    /// otherwise, so an agent whose isolators changed still reads its
    /// containers.
    pub fn from_stored(&self, stored: &Map<String, Value>) -> Resources {
        let mut resources = Resources::new();
        for (key, value) in stored {
            if let Some(section) = self.section_of_flat(key).filter(|_| !value.is_object()) {
                resources
                    .sections
                    .entry(section.name.clone())
                    .or_default()
                    .insert(key.clone(), value.clone());
            } else if let Value::Object(section) = value {
                let entry = resources.sections.entry(key.clone()).or_default();
                for (field, v) in section {
                    entry.insert(field.clone(), v.clone());
                }
            }
        }
        resources
    }

    /// The `/v1` shape of `resources`: every field that has a flat key at
    /// the top level (as the API has always answered), the others in their
    /// sections.
    pub fn to_v1(&self, resources: &Resources) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, section) in resources.sections() {
            let flat_keys = self
                .sections
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.flat_keys.as_slice())
                .unwrap_or_default();
            let mut rest = Section::new();
            for (field, value) in section {
                if flat_keys.iter().any(|k| k == field) {
                    out.insert(field.clone(), value.clone());
                } else {
                    rest.insert(field.clone(), value.clone());
                }
            }
            if !rest.is_empty() {
                out.insert(name.to_string(), Value::Object(rest));
            }
        }
        out
    }

    /// Names a refused field the way the request wrote it: a section that
    /// came as flat keys is named flat (`resources.cpus`), one that came as
    /// a section is named in it (`resources.cpu.cpus`), whichever form the
    /// isolator used.
    pub fn request_field(&self, field: &str, form: &RequestForm) -> String {
        let Some(rest) = field.strip_prefix("resources.") else {
            return field.to_string();
        };
        for section in &self.sections {
            let flat = form.flat.contains(&section.name);
            for key in &section.flat_keys {
                let sectioned = format!("{}.{key}", section.name);
                if flat {
                    if let Some(tail) = strip_field(rest, &sectioned) {
                        return format!("resources.{key}{tail}");
                    }
                } else if form.keys.contains_key(&section.name) {
                    if let Some(tail) = strip_field(rest, key) {
                        return format!("resources.{sectioned}{tail}");
                    }
                }
            }
        }
        field.to_string()
    }
}

/// `rest` without the leading field `name` (`name`, `name.x`, `name[0]`).
fn strip_field<'a>(rest: &'a str, name: &str) -> Option<&'a str> {
    let tail = rest.strip_prefix(name)?;
    (tail.is_empty() || tail.starts_with('.') || tail.starts_with('[')).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> ResourceTable {
        ResourceTable::new([
            ResourceSection::new("cpu").with_flat_keys(&["cpus"]),
            ResourceSection::new("memory").with_flat_keys(&["memory", "memory_reservation"]),
            ResourceSection::new("example"),
        ])
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn flat_and_sectioned_requests_read_the_same() {
        let (flat, _) = table()
            .from_request(&obj(json!({"cpus": 0.5, "memory": 64})))
            .unwrap();
        let (sectioned, _) = table()
            .from_request(&obj(
                json!({"cpu": {"cpus": 0.5}, "memory": {"memory": 64}}),
            ))
            .unwrap();
        assert_eq!(flat, sectioned);
        assert_eq!(
            Value::Object(table().to_v1(&sectioned)),
            json!({"cpus": 0.5, "memory": 64})
        );
    }

    #[test]
    fn unknown_and_doubled_keys_are_refused_by_name() {
        let err = table().from_request(&obj(json!({"gpu": 1}))).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid resources.gpu"),
            "{err}"
        );
        let err = table()
            .from_request(&obj(json!({"cpus": 1, "cpu": {"cpus": 2}})))
            .unwrap_err();
        assert!(err.to_string().contains("resources.cpu"), "{err}");
    }

    #[test]
    fn fields_are_named_as_the_request_wrote_them() {
        let t = table();
        let (_, flat) = t.from_request(&obj(json!({"memory": 1}))).unwrap();
        assert_eq!(
            t.request_field("resources.memory.memory", &flat),
            "resources.memory"
        );
        let (_, sectioned) = t
            .from_request(&obj(json!({"memory": {"memory": 1}})))
            .unwrap();
        assert_eq!(
            t.request_field("resources.memory", &sectioned),
            "resources.memory.memory"
        );
        assert_eq!(
            t.request_field("resources.example.tokens", &sectioned),
            "resources.example.tokens"
        );
    }

    #[test]
    fn stored_records_of_either_shape_read_back() {
        let t = table();
        let r = t.from_stored(&obj(json!({"cpus": 0.5, "gone": {"x": 1}, "junk": 3})));
        assert_eq!(r.raw_section("cpu").unwrap()["cpus"], 0.5);
        assert_eq!(r.raw_section("gone").unwrap()["x"], 1);
        assert!(r.raw_section("junk").is_none());
    }
}
