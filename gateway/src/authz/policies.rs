//! Loading a policy directory: `schema.cedarschema`, every `*.cedar` file, and an optional
//! `entities.json`, parsed once and validated against the schema in strict mode, plus the
//! datasets the engine serves when its configuration file is given ([`super::served`]).
//! Every problem is reported as `file:line:col: message`, so an author can jump to it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet,
    PrincipalConstraint, RestrictedExpression, Schema, ValidationMode, Validator,
};

use super::columns::{self, DeclaredColumn};
use super::facts::{PRINCIPAL_KINDS, principal_type};
use super::masks::{MASKS_FILE, MaskRules};
use super::row_filter;
use super::served::{self, Served};
use super::sql::{DatasetName, NameDefaults};
use miette::Diagnostic;

pub(crate) const SCHEMA_FILE: &str = "schema.cedarschema";
pub(crate) const ENTITIES_FILE: &str = "entities.json";

/// A loaded, validated policy set.
pub(crate) struct PolicyBundle {
    pub policies: PolicySet,
    /// Per action id, the policies whose action scope can match it: Cedar evaluates every
    /// policy of the set it is given, so each request gets only the ones that can apply.
    /// Empty when the schema has action groups (then every request gets the whole set).
    by_action: HashMap<String, PolicySet>,
    pub schema: Schema,
    pub entities: Entities,
    /// Every file read, for the reload watcher.
    pub files: Vec<PathBuf>,
    /// SHA-256 (hex, 16 bytes) over every file read, by path: the same files give the same
    /// fingerprint on every gateway. Stamped into each request the set allows, so the engine
    /// can refuse a ticket or prepared statement issued under another set.
    pub fingerprint: std::sync::Arc<str>,
    /// The datasets the engine serves (`catalog.schema.table`), when its file was given.
    pub served: Option<HashSet<String>>,
    /// What is valid but probably wrong: a policy or an entity naming a dataset the engine
    /// does not serve.
    pub warnings: Vec<String>,
    /// The declared columns, row types, view reads and masks row and column policy is decided with.
    pub governance: Governance,
    /// The schema declares `unlimited_rows`: the gateway then asks it of every allowed call.
    pub asks_unlimited_rows: bool,
}

/// What row and column decisions are made with, from the engine's file and `masks.yaml`.
#[derive(Debug, Default)]
pub(crate) struct Governance {
    /// Per governed dataset (`catalog.schema.table`): its declared columns and row type.
    pub datasets: HashMap<String, GovernedDataset>,
    /// Per view: the datasets it reads (a view over views: theirs too).
    pub views: HashMap<String, Vec<DatasetName>>,
    pub masks: MaskRules,
    /// Columns with the same tags are decided alike (see `data_policy::columns_alike_by_tags`).
    pub alike_by_tags: bool,
}

#[derive(Debug)]
pub(crate) struct GovernedDataset {
    pub name: DatasetName,
    pub columns: Vec<DeclaredColumn>,
    /// `Row::<schema>::<table>`, when it has typed columns.
    pub row_type: Option<EntityTypeName>,
}

impl Governance {
    /// Governed: a dataset the engine's file declares columns for, or whose rows the schema
    /// declares a type for (`Row::<schema>::<table>`, in the default catalog).
    fn new(served: &[Served], schema: &Schema, defaults: &NameDefaults, masks: MaskRules) -> Self {
        let mut datasets: HashMap<String, GovernedDataset> = HashMap::new();
        for s in served.iter().filter(|s| !s.columns.is_empty()) {
            let governed = GovernedDataset { name: s.name.clone(), columns: s.columns.clone(), row_type: None };
            datasets.insert(s.name.to_string(), governed);
        }
        for row_type in schema.entity_types() {
            let Some(name) = columns::rows_of(row_type, defaults) else { continue };
            let governed = datasets.entry(name.to_string()).or_insert_with(|| GovernedDataset {
                name,
                columns: Vec::new(),
                row_type: None,
            });
            governed.row_type = Some(row_type.clone());
        }
        let direct: HashMap<String, Vec<DatasetName>> =
            served.iter().filter(|s| !s.reads.is_empty()).map(|s| (s.name.to_string(), s.reads.clone())).collect();
        // Views over views: follow each to the tables at the bottom (bounded by the number of views).
        let mut views = HashMap::new();
        for (view, reads) in &direct {
            let mut seen: HashSet<String> = HashSet::new();
            let mut pending: Vec<DatasetName> = reads.clone();
            let mut out = Vec::new();
            while let Some(next) = pending.pop() {
                let id = next.to_string();
                if !seen.insert(id.clone()) {
                    continue;
                }
                if let Some(more) = direct.get(&id) {
                    pending.extend(more.iter().cloned());
                }
                out.push(next);
            }
            out.sort();
            views.insert(view.clone(), out);
        }
        Self { datasets, views, masks, alike_by_tags: false }
    }

    fn alike_by_tags(self, alike_by_tags: bool) -> Self {
        Self { alike_by_tags, ..self }
    }

    /// The governed datasets a statement touching `scope` reads, directly or through views.
    pub(crate) fn touched<'a>(&'a self, scope: &[String]) -> Vec<&'a GovernedDataset> {
        let mut out: Vec<&GovernedDataset> = Vec::new();
        let mut add = |id: &str| {
            if let Some(governed) = self.datasets.get(id)
                && !out.iter().any(|g| std::ptr::eq(*g, governed))
            {
                out.push(governed);
            }
        };
        for id in scope {
            add(id);
            for read in self.views.get(id).into_iter().flatten() {
                add(&read.to_string());
            }
        }
        out
    }
}

/// The name defaults datasets resolve with (the engine's, else DataFusion's).
fn defaults_of(engine: Option<EngineCatalog<'_>>) -> NameDefaults {
    engine.map_or_else(
        || NameDefaults { catalog: "datafusion".into(), schema: "public".into() },
        |engine| engine.defaults.clone(),
    )
}

/// `select_row` policies whose conditions say something about the row that has no SQL form
/// (see [`row_filter`]), each as `file:line:col: message`.
fn row_filter_problems(policies: &PolicySet, sources: &HashMap<PolicyId, (PathBuf, String)>) -> Vec<String> {
    let mut problems = Vec::new();
    for policy in policies.policies() {
        let about_rows = match policy.action_constraint() {
            ActionConstraint::Any => false,
            ActionConstraint::Eq(uid) => uid.id().unescaped() == "select_row",
            ActionConstraint::In(uids) => uids.iter().any(|uid| uid.id().unescaped() == "select_row"),
        };
        if !about_rows {
            continue;
        }
        if let Err(row_filter::Unsupported(construct)) = row_filter::check_policy(policy) {
            let place = match sources.get(policy.id()) {
                Some((path, text)) => {
                    let at = text.find(&format!("@id(\"{}\")", policy.id())).unwrap_or(0);
                    let (line, col) = line_col(text, at);
                    format!("{}:{line}:{col}", path.display())
                }
                None => format!("policy {}", policy.id()),
            };
            problems.push(format!(
                "{place}: policy {} is a row filter the engine cannot run: {construct} (compare row attributes with values, the principal's attributes or the context)",
                policy.id()
            ));
        }
    }
    problems
}

/// Where the served datasets come from: the engine's configuration file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineCatalog<'a> {
    pub config: &'a Path,
    pub defaults: &'a NameDefaults,
}

impl std::fmt::Debug for PolicyBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyBundle").field("policies", &self.policies.policies().count()).finish_non_exhaustive()
    }
}

/// Everything wrong with a policy directory, one `file:line:col: message` per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub Vec<String>);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for LoadError {}

impl PolicyBundle {
    /// The policy files in `dir`, with the datasets `engine` serves (when given) as `Dataset`
    /// entities.
    pub(crate) fn load(dir: &Path, engine: Option<EngineCatalog<'_>>) -> Result<Self, LoadError> {
        let mut problems = Vec::new();
        let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));

        // What the engine serves comes first: its declared columns add row types to the schema.
        let served = match engine {
            Some(engine) => match served::read(engine.config, engine.defaults) {
                Ok(served) => Some(served),
                Err(error) => {
                    problems.push(error);
                    None
                }
            },
            None => None,
        };
        let schema_path = dir.join(SCHEMA_FILE);
        let schema = match read(&schema_path) {
            Ok(text) => match Schema::from_cedarschema_str(&text) {
                Ok((schema, _warnings)) => Some(schema),
                Err(error) => {
                    problems.extend(diagnostics(&schema_path, &text, &error));
                    None
                }
            },
            Err(error) => return Err(LoadError(vec![error])),
        };
        let masks = match MaskRules::load(dir) {
            Ok(masks) => masks,
            Err(error) => {
                problems.push(error);
                None
            }
        };

        let mut files = policy_files(dir).map_err(|e| LoadError(vec![format!("{}: {e}", dir.display())]))?;
        if files.is_empty() {
            problems.push(format!("{}: no *.cedar policy files", dir.display()));
        }
        let mut policies = PolicySet::new();
        // Policy id → (file, its text), to place validation errors.
        let mut sources: HashMap<PolicyId, (PathBuf, String)> = HashMap::new();
        for path in &files {
            let text = match read(path) {
                Ok(text) => text,
                Err(error) => {
                    problems.push(error);
                    continue;
                }
            };
            let set = match PolicySet::from_str(&text) {
                Ok(set) => set,
                Err(error) => {
                    problems.extend(diagnostics(path, &text, &error));
                    continue;
                }
            };
            if set.templates().next().is_some() {
                problems.push(format!("{}: policy templates are not supported", path.display()));
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for (i, policy) in set.policies().enumerate() {
                // `@id("...")` names a policy in decisions and the audit log; else file and index.
                let id = PolicyId::new(policy.annotation("id").map_or_else(|| format!("{name}#{i}"), str::to_string));
                if let Some((first, _)) = sources.get(&id) {
                    problems.push(format!(
                        "{}: policy #{i} has the id {:?}, which {} already uses: ids must be unique",
                        path.display(),
                        id.to_string(),
                        if first == path {
                            "an earlier policy of this file".to_string()
                        } else {
                            first.display().to_string()
                        }
                    ));
                    continue;
                }
                if let Err(error) = policies.add(policy.new_id(id.clone())) {
                    problems.push(format!("{}: {error}", path.display()));
                    continue;
                }
                sources.insert(id, (path.clone(), text.clone()));
            }
        }

        let entities_path = dir.join(ENTITIES_FILE);
        let mut entities = Entities::empty();
        if let Some(schema) = &schema {
            if problems.is_empty() {
                let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
                for error in result.validation_errors() {
                    match sources.get(error.policy_id()) {
                        Some((path, text)) => problems.extend(diagnostics(path, text, error)),
                        None => problems.push(format!("policy {}: {error}", error.policy_id())),
                    }
                }
            }
            if entities_path.exists() {
                files.push(entities_path.clone());
                match read(&entities_path) {
                    Ok(text) => match Entities::from_json_str(&text, Some(schema)) {
                        Ok(loaded) => {
                            if let Some(e) = loaded
                                .iter()
                                // Principals come from credentials, never from the entities file.
                                .find(|e| {
                                    let type_name = e.uid().type_name().to_string();
                                    PRINCIPAL_KINDS.iter().any(|k| principal_type(*k) == type_name)
                                })
                            {
                                problems.push(format!(
                                    "{}: {} is a principal; principals come from credentials, not this file",
                                    entities_path.display(),
                                    e.uid()
                                ));
                            }
                            entities = loaded;
                        }
                        Err(error) => problems.extend(diagnostics(&entities_path, &text, &error)),
                    },
                    Err(error) => problems.push(error),
                }
            }
        }
        files.push(schema_path);
        let mut served_names = None;
        let mut warnings = Vec::new();
        if let Some(engine) = engine {
            files.push(engine.config.to_path_buf());
        }
        if masks.is_some() {
            files.push(dir.join(MASKS_FILE));
        }
        let masks = masks.unwrap_or_default();
        if let (Some(served), Some(schema)) = (&served, &schema) {
            match add_served(entities.clone(), served, schema, &entities_path) {
                Ok(merged) => entities = merged,
                Err(mut errors) => problems.append(&mut errors),
            }
            let names: HashSet<String> = served.iter().map(|s| s.name.to_string()).collect();
            warnings = unserved_names(&policies, &entities, &names, &sources, &entities_path);
            served_names = Some(names);
            problems.extend(masks.type_errors(served));
            for tag in masks.unhandled_tags(served) {
                warnings.push(format!(
                    "{}: no mask for the tag {tag:?}: columns carrying it show NULL to whoever may not unmask them",
                    dir.join(MASKS_FILE).display()
                ));
            }
        }
        problems.extend(row_filter_problems(&policies, &sources));
        let governance = match &schema {
            Some(schema) => Governance::new(served.as_deref().unwrap_or_default(), schema, &defaults_of(engine), masks)
                .alike_by_tags(columns::columns_alike_by_tags(&policies)),
            None => Governance::default(),
        };
        match schema {
            Some(schema) if problems.is_empty() => {
                let by_action = slice_by_action(&policies, &schema).map_err(|e| LoadError(vec![e]))?;
                let fingerprint = fingerprint(&files);
                let asks_unlimited_rows =
                    schema.actions().any(|a| a.id().unescaped() == crate::query_limits::UNLIMITED_ROWS);
                Ok(Self {
                    policies,
                    by_action,
                    schema,
                    entities,
                    files,
                    fingerprint,
                    served: served_names,
                    warnings,
                    governance,
                    asks_unlimited_rows,
                })
            }
            _ => Err(LoadError(problems)),
        }
    }

    /// The policies that can apply to `action`.
    pub(crate) fn policies_for(&self, action: &str) -> &PolicySet {
        self.by_action.get(action).unwrap_or(&self.policies)
    }

    /// The policies that can apply to `principal` (whose entity, with its ancestors, is in
    /// `entities`), per action. Exact: a policy whose principal scope does not match is false
    /// for every request of that principal.
    pub(crate) fn for_principal(
        &self,
        principal: &EntityUid,
        entities: &Entities,
    ) -> Result<PrincipalPolicies, String> {
        let ancestors: HashSet<&EntityUid> = entities.ancestors(principal).map(Iterator::collect).unwrap_or_default();
        let is_or_in = |uid: &EntityUid| uid == principal || ancestors.contains(uid);
        let applies = |policy: &Policy| match policy.principal_constraint() {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::Eq(uid) => uid == *principal,
            PrincipalConstraint::In(uid) => is_or_in(&uid),
            PrincipalConstraint::Is(type_name) => type_name == *principal.type_name(),
            PrincipalConstraint::IsIn(type_name, uid) => type_name == *principal.type_name() && is_or_in(&uid),
        };
        let filter = |set: &PolicySet| -> Result<PolicySet, String> {
            let mut out = PolicySet::new();
            for policy in set.policies().filter(|p| applies(p)) {
                out.add(policy.clone()).map_err(|e| e.to_string())?;
            }
            Ok(out)
        };
        let mut by_action = HashMap::new();
        for action in self.by_action.keys() {
            by_action.insert(action.clone(), filter(self.policies_for(action))?);
        }
        Ok(PrincipalPolicies { all: filter(&self.policies)?, by_action })
    }
}

/// `entities` plus one `Dataset` entity per served dataset (its `tenant` and
/// `classification` as attributes). A dataset entities.json already defines keeps that
/// definition, unless the engine's file labels it too: two sources of truth are refused.
fn add_served(
    entities: Entities,
    served: &[Served],
    schema: &Schema,
    entities_path: &Path,
) -> Result<Entities, Vec<String>> {
    let dataset = EntityTypeName::from_str("Dataset").map_err(|e| vec![e.to_string()])?;
    let column_type = EntityTypeName::from_str("Column").map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    let mut added = Vec::new();
    let mut seen = HashSet::new();
    for s in served {
        let uid = EntityUid::from_type_name_and_id(dataset.clone(), EntityId::new(s.name.to_string()));
        if !seen.insert(uid.clone()) {
            continue;
        }
        for column in &s.columns {
            match column_entity(&column_type, &uid, s, column) {
                Ok(entity) => added.push(entity),
                Err(error) => problems.push(format!("{}: column {}: {error}", s.origin, column.name)),
            }
        }
        if entities.get(&uid).is_some() {
            if s.labelled() {
                problems.push(format!(
                    "{uid} is labelled both in {} and in {}: keep one",
                    entities_path.display(),
                    s.origin
                ));
            }
            continue;
        }
        let mut attrs = HashMap::new();
        for (key, value) in [("tenant", &s.tenant), ("classification", &s.classification)] {
            if let Some(value) = value {
                attrs.insert(key.to_string(), RestrictedExpression::new_string(value.clone()));
            }
        }
        match Entity::new(uid, attrs, HashSet::new()) {
            Ok(entity) => added.push(entity),
            Err(error) => problems.push(format!("{}: {error}", s.origin)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    entities.add_entities(added, Some(schema)).map_err(|e| vec![format!("engine datasets: {e}")])
}

/// A declared column as a `Column` entity, child of its dataset's.
fn column_entity(
    column_type: &EntityTypeName,
    dataset: &EntityUid,
    served: &Served,
    column: &DeclaredColumn,
) -> Result<Entity, String> {
    let uid = EntityUid::from_type_name_and_id(
        column_type.clone(),
        EntityId::new(columns::column_id(&served.name, &column.name)),
    );
    let mut attrs = HashMap::new();
    attrs.insert("name".to_string(), RestrictedExpression::new_string(column.name.clone()));
    attrs.insert("dataset".to_string(), RestrictedExpression::new_string(served.name.to_string()));
    let tags = column.tags.iter().map(|t| RestrictedExpression::new_string(t.clone()));
    attrs.insert("tags".to_string(), RestrictedExpression::new_set(tags));
    if let Some(kind) = column.kind {
        attrs.insert("type".to_string(), RestrictedExpression::new_string(kind.as_str().to_string()));
    }
    Entity::new(uid, attrs, HashSet::from([dataset.clone()])).map_err(|e| e.to_string())
}

/// Warnings for `policy validate`: policies and entities naming a dataset that is not served.
fn unserved_names(
    policies: &PolicySet,
    entities: &Entities,
    served: &HashSet<String>,
    sources: &HashMap<PolicyId, (PathBuf, String)>,
    entities_path: &Path,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for policy in policies.policies() {
        let mut named = Vec::new();
        if let Ok(json) = policy.to_json() {
            datasets_in(&json, &mut named);
        }
        named.sort();
        named.dedup();
        let place = sources.get(policy.id()).map_or_else(String::new, |(path, _)| format!("{}: ", path.display()));
        for name in named.into_iter().filter(|n| !served.contains(n)) {
            warnings.push(format!(
                "{place}policy {} names Dataset::{name:?}, which the engine does not serve",
                policy.id()
            ));
        }
    }
    for entity in entities.iter() {
        let uid = entity.uid();
        let id = uid.id().unescaped().to_string();
        if uid.type_name().to_string() == "Dataset" && !served.contains(&id) {
            warnings.push(format!("{}: {uid} is not served by the engine", entities_path.display()));
        }
    }
    warnings
}

/// Every `Dataset` entity literal in a policy's JSON form (scope and conditions).
fn datasets_in(json: &serde_json::Value, out: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(map) => {
            if let (Some(serde_json::Value::String(kind)), Some(serde_json::Value::String(id))) =
                (map.get("type"), map.get("id"))
                && kind == "Dataset"
            {
                out.push(id.clone());
            }
            map.values().for_each(|v| datasets_in(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| datasets_in(v, out)),
        _ => {}
    }
}

/// One principal's slice of the policy set, per action.
#[derive(Debug)]
pub(crate) struct PrincipalPolicies {
    all: PolicySet,
    by_action: HashMap<String, PolicySet>,
}

impl PrincipalPolicies {
    pub(crate) fn for_action(&self, action: &str) -> &PolicySet {
        self.by_action.get(action).unwrap_or(&self.all)
    }
}

/// Exact without action groups: then `action in [A, B]` matches exactly A and B, and a policy
/// whose action scope does not match a request is false for it (neither permits nor forbids).
fn slice_by_action(policies: &PolicySet, schema: &Schema) -> Result<HashMap<String, PolicySet>, String> {
    let mut sliced = HashMap::new();
    if schema.action_groups().next().is_some() {
        return Ok(sliced);
    }
    for action in schema.actions() {
        let mut set = PolicySet::new();
        for policy in policies.policies() {
            let applies = match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(uid) => uid == *action,
                ActionConstraint::In(uids) => uids.contains(action),
            };
            if applies {
                set.add(policy.clone()).map_err(|e| e.to_string())?;
            }
        }
        sliced.insert(action.id().unescaped().to_string(), set);
    }
    Ok(sliced)
}

/// The `*.cedar` files of `dir`, sorted.
fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cedar") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `file:line:col: message` for a diagnostic and each related one.
fn diagnostics(path: &Path, text: &str, diagnostic: &dyn Diagnostic) -> Vec<String> {
    let mut out = Vec::new();
    let mut related: Vec<&dyn Diagnostic> = diagnostic.related().map(|r| r.collect()).unwrap_or_default();
    if related.is_empty() {
        related.push(diagnostic);
    }
    for d in related {
        let offset = d.labels().and_then(|mut labels| labels.next()).map(|label| label.offset());
        let place = match offset {
            Some(offset) => {
                let (line, col) = line_col(text, offset);
                format!("{}:{line}:{col}", path.display())
            }
            None => path.display().to_string(),
        };
        let mut message = format!("{place}: {d}");
        // Cedar says which entity and attribute in the error's causes.
        let mut source = d.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        if let Some(help) = d.help() {
            message.push_str(&format!(" (help: {help})"));
        }
        out.push(message);
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// See [`PolicyBundle::fingerprint`]. A file that cannot be read again (removed since)
/// counts by its name alone: the next reload reads the set anew.
fn fingerprint(files: &[PathBuf]) -> std::sync::Arc<str> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for file in files {
        let path = file.to_string_lossy();
        let text = std::fs::read(file).unwrap_or_default();
        for part in [path.as_bytes(), &text] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    }
    ctx.finish().as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect::<String>().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "entity Group; entity User in [Group]; entity Endpoint; action query appliesTo { principal: [User], resource: [Endpoint] };";

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn loads_and_names_policies_by_id_annotation() {
        let d = dir(&[
            (SCHEMA_FILE, SCHEMA),
            (
                "a.cedar",
                "@id(\"readers\")\npermit(principal in Group::\"r\", action == Action::\"query\", resource);\npermit(principal, action, resource) when { false };",
            ),
        ]);
        let bundle = PolicyBundle::load(d.path(), None).unwrap();
        let ids: Vec<String> = bundle.policies.policies().map(|p| p.id().to_string()).collect();
        assert!(ids.contains(&"readers".to_string()) && ids.contains(&"a.cedar#1".to_string()), "{ids:?}");
        // Both can apply to `query`; an action the schema does not know gets the whole set.
        assert_eq!(bundle.policies_for("query").policies().count(), 2);
        assert_eq!(bundle.policies_for("nope").policies().count(), 2);
    }

    #[test]
    fn each_action_gets_the_policies_that_can_apply_to_it() {
        let schema =
            "entity User; entity Endpoint; action read, write appliesTo { principal: [User], resource: [Endpoint] };";
        let d = dir(&[
            (SCHEMA_FILE, schema),
            (
                "a.cedar",
                "@id(\"r\") permit(principal, action == Action::\"read\", resource);\n@id(\"w\") forbid(principal, action in [Action::\"write\"], resource);\n@id(\"any\") permit(principal, action, resource) when { false };",
            ),
        ]);
        let bundle = PolicyBundle::load(d.path(), None).unwrap();
        let ids = |action: &str| {
            let mut ids: Vec<String> = bundle.policies_for(action).policies().map(|p| p.id().to_string()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids("read"), ["any", "r"]);
        assert_eq!(ids("write"), ["any", "w"]);

        // Per principal: scopes naming another principal or a group it is not in drop out.
        let schema = "entity Group in [Group]; entity User in [Group]; entity Endpoint; action read appliesTo { principal: [User], resource: [Endpoint] };";
        let d = dir(&[
            (SCHEMA_FILE, schema),
            (
                "a.cedar",
                "@id(\"all\") permit(principal, action, resource);\n@id(\"bob\") permit(principal == User::\"bob\", action, resource);\n@id(\"org\") permit(principal in Group::\"org\", action, resource);\n@id(\"users\") permit(principal is User in Group::\"org\", action, resource);\n@id(\"other\") forbid(principal in Group::\"other\", action, resource);",
            ),
            (
                ENTITIES_FILE,
                r#"[{"uid": {"type": "Group", "id": "team"}, "attrs": {}, "parents": [{"type": "Group", "id": "org"}]}]"#,
            ),
        ]);
        let bundle = PolicyBundle::load(d.path(), None).unwrap();
        let alice: EntityUid = r#"User::"alice""#.parse().unwrap();
        let team: EntityUid = r#"Group::"team""#.parse().unwrap();
        let entity = cedar_policy::Entity::new_no_attrs(alice.clone(), HashSet::from([team]));
        let entities = bundle.entities.clone().add_entities([entity], None).unwrap();
        let slice = bundle.for_principal(&alice, &entities).unwrap();
        let mut ids: Vec<String> = slice.for_action("read").policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["all", "org", "users"], "org through team's parent");
        // With action groups, `action in` may match children: no slicing.
        let grouped = "entity User; entity Endpoint; action all; action read in [all] appliesTo { principal: [User], resource: [Endpoint] };";
        let d =
            dir(&[(SCHEMA_FILE, grouped), ("a.cedar", "permit(principal, action in [Action::\"all\"], resource);")]);
        let bundle = PolicyBundle::load(d.path(), None).unwrap();
        assert_eq!(bundle.policies_for("read").policies().count(), 1);
    }

    #[test]
    fn syntax_and_validation_errors_name_file_line_and_column() {
        let d = dir(&[
            (SCHEMA_FILE, SCHEMA),
            ("bad.cedar", "permit(principal, action, resource);\nforbid(principal action, resource);"),
        ]);
        let error = PolicyBundle::load(d.path(), None).unwrap_err().to_string();
        assert!(error.contains("bad.cedar:2:"), "{error}");

        let d = dir(&[
            (SCHEMA_FILE, SCHEMA),
            ("typo.cedar", "permit(principal, action, resource)\n  when { principal.nope == 1 };"),
        ]);
        let error = PolicyBundle::load(d.path(), None).unwrap_err().to_string();
        assert!(error.contains("typo.cedar:2:"), "{error}");
        assert!(error.contains("nope"), "{error}");

        let d = dir(&[(SCHEMA_FILE, "entity User in [Nope];"), ("a.cedar", "permit(principal, action, resource);")]);
        assert!(PolicyBundle::load(d.path(), None).unwrap_err().to_string().contains("schema.cedarschema"));
    }

    #[test]
    fn principals_in_the_entities_file_are_refused() {
        let d = dir(&[
            (SCHEMA_FILE, SCHEMA),
            ("a.cedar", "permit(principal, action, resource);"),
            (ENTITIES_FILE, r#"[{"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": []}]"#),
        ]);
        assert!(
            PolicyBundle::load(d.path(), None).unwrap_err().to_string().contains("principals come from credentials")
        );
    }

    #[test]
    fn empty_or_missing_directory_is_an_error() {
        let d = dir(&[(SCHEMA_FILE, SCHEMA)]);
        assert!(PolicyBundle::load(d.path(), None).unwrap_err().to_string().contains("no *.cedar"));
        assert!(PolicyBundle::load(&d.path().join("missing"), None).is_err());
    }
}
