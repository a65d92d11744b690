//! The authorize stage's state: the enforced and shadow policy sets, swapped whole on
//! reload, and the caches built from them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use cedar_policy::{
    Authorizer as CedarAuthorizer, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PartialEntities,
    PolicyId, Request, RestrictedExpression,
};
use identity::{DatasetPolicy, ExpiringCache, Principal, PrincipalKind};

use super::action::{DatasetAction, EndpointAction};
use super::context::ContextCache;
use super::data_policy::{self, RowQuestion};
use super::decisions::{DecisionCache, Key};
use super::error::AuthzError;
use super::facts::{RequestFacts, principal_type};
use super::lint;
use super::policies::{EngineCatalog, LoadError, PolicyBundle, PrincipalPolicies};
use super::sql::{self, NameDefaults, StatementAccess};
use super::verdict::{Allowed, Answer, Ask, Evaluation, Resource, Verdict, asks, scope};
use crate::config::AuthorizationConfig;

/// One loaded policy set and what was derived from it.
struct Loaded {
    bundle: PolicyBundle,
    /// Base entities plus each principal's own entity, per principal.
    principals: ExpiringCache<Principal, Arc<PrincipalView>>,
}

impl Loaded {
    fn new(bundle: PolicyBundle, cache_entries: usize) -> Arc<Self> {
        Arc::new(Self { bundle, principals: ExpiringCache::new(cache_entries) })
    }
}

/// The sets in force, swapped whole when either is reloaded: a verdict is always made by one
/// enforced and one shadow set, and cached with them.
struct Live {
    enforced: Arc<Loaded>,
    shadow: Option<Arc<Loaded>>,
    /// Whole verdicts for this second (see [`decisions`]).
    decisions: DecisionCache,
}

/// What is built once per principal: its entity store and the policies that can apply to it.
struct PrincipalView {
    entities: Entities,
    policies: PrincipalPolicies,
    /// The entities again, for partial evaluation of row filters (built on first use).
    partial: OnceLock<Result<PartialEntities, String>>,
}

/// The authorize stage's state: the live policy set, swapped atomically on reload.
pub struct Authorizer {
    dir: PathBuf,
    shadow_dir: Option<PathBuf>,
    engine_config: Option<PathBuf>,
    live: ArcSwap<Live>,
    /// Reloads of the two sets take turns, so neither swaps out the other's new set.
    reloading: Mutex<()>,
    cedar: CedarAuthorizer,
    contexts: ContextCache,
    defaults: NameDefaults,
    cache_entries: usize,
    types: Types,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Entity type names, parsed once.
struct Types {
    user: EntityTypeName,
    service: EntityTypeName,
    workload: EntityTypeName,
    group: EntityTypeName,
    endpoint: EntityTypeName,
    dataset: EntityTypeName,
    column: EntityTypeName,
    action: EntityTypeName,
}

/// How long a principal's entity is reused (groups come from the credential, which may change).
const PRINCIPAL_ENTITY_SECS: u64 = 60;

impl Authorizer {
    /// The policies in `dir`, with the datasets the engine serves from `engine_config`: what
    /// the `gateway policy` commands decide with.
    pub fn from_dir(dir: &Path, engine_config: Option<&Path>) -> Result<Self, LoadError> {
        let config = AuthorizationConfig {
            engine_config: engine_config.map(Into::into),
            ..AuthorizationConfig::new(dir.to_path_buf())
        };
        Self::load(&config)
    }

    /// The enforced set (`authorization.policies`); [`Self::with_shadow`] adds the shadow set.
    pub fn load(config: &AuthorizationConfig) -> Result<Self, LoadError> {
        let defaults = NameDefaults { catalog: config.default_catalog.clone(), schema: config.default_schema.clone() };
        let engine = config.engine_config.as_deref().map(|config| EngineCatalog { config, defaults: &defaults });
        let bundle = PolicyBundle::load(&config.policies, engine)?;
        let parse = |name: &str| EntityTypeName::from_str(name).map_err(|e| LoadError(vec![e.to_string()]));
        let types = Types {
            user: parse(principal_type(PrincipalKind::User))?,
            service: parse(principal_type(PrincipalKind::Service))?,
            workload: parse(principal_type(PrincipalKind::Workload))?,
            group: parse("Group")?,
            endpoint: parse("Endpoint")?,
            dataset: parse("Dataset")?,
            column: parse("Column")?,
            action: parse("Action")?,
        };
        Ok(Self {
            dir: config.policies.to_path_buf(),
            shadow_dir: None,
            engine_config: config.engine_config.as_deref().map(Path::to_path_buf),
            live: ArcSwap::from_pointee(Live {
                enforced: Loaded::new(bundle, config.principal_cache_entries),
                shadow: None,
                decisions: DecisionCache::new(config.principal_cache_entries),
            }),
            reloading: Mutex::new(()),
            cedar: CedarAuthorizer::new(),
            contexts: ContextCache::new(config.principal_cache_entries),
            defaults,
            cache_entries: config.principal_cache_entries,
            types,
        })
    }

    pub fn defaults(&self) -> &NameDefaults {
        &self.defaults
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine's file the datasets and columns are read from (`authorization.engine_config`).
    pub fn engine_config(&self) -> Option<&Path> {
        self.engine_config.as_deref()
    }

    /// The shadow set's folder, when one is loaded.
    pub fn shadow_dir(&self) -> Option<&Path> {
        self.shadow_dir.as_deref()
    }

    /// The files the current policy set was read from.
    pub fn files(&self) -> Vec<PathBuf> {
        self.live.load().enforced.bundle.files.clone()
    }

    fn load_bundle(&self, dir: &Path) -> Result<PolicyBundle, LoadError> {
        let engine = self.engine_config.as_deref().map(|config| EngineCatalog { config, defaults: &self.defaults });
        PolicyBundle::load(dir, engine)
    }

    /// Adds a shadow set from `dir`, loaded and validated like the enforced one: decided
    /// beside it on every call, never changing an outcome.
    pub fn with_shadow(mut self, dir: &Path) -> Result<Self, LoadError> {
        let bundle = self.load_bundle(dir)?;
        self.shadow_dir = Some(dir.to_path_buf());
        let enforced = Arc::clone(&self.live.load().enforced);
        self.live.store(Arc::new(Live {
            enforced,
            shadow: Some(Loaded::new(bundle, self.cache_entries)),
            decisions: DecisionCache::new(self.cache_entries),
        }));
        Ok(self)
    }

    /// Loads the directory again; on success the new set serves the next request, on failure
    /// the old one keeps serving and the error says what is wrong where.
    pub fn reload(&self) -> Result<usize, LoadError> {
        let bundle = self.load_bundle(&self.dir)?;
        let count = bundle.policies.policies().count();
        let _turn = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let shadow = self.live.load().shadow.clone();
        self.swap(Loaded::new(bundle, self.cache_entries), shadow);
        Ok(count)
    }

    /// [`Self::reload`] for the shadow set (a no-op without one).
    pub fn reload_shadow(&self) -> Result<usize, LoadError> {
        let Some(dir) = &self.shadow_dir else { return Ok(0) };
        let bundle = self.load_bundle(dir)?;
        let count = bundle.policies.policies().count();
        let _turn = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let enforced = Arc::clone(&self.live.load().enforced);
        self.swap(enforced, Some(Loaded::new(bundle, self.cache_entries)));
        Ok(count)
    }

    /// A new pair of sets, with a new (empty) decision cache: no verdict of the old pair is
    /// served after the swap.
    fn swap(&self, enforced: Arc<Loaded>, shadow: Option<Arc<Loaded>>) {
        self.live.store(Arc::new(Live { enforced, shadow, decisions: DecisionCache::new(self.cache_entries) }));
    }

    /// Authorizes a request whose meaning `classify` extracts from `payload` (the SQL body,
    /// or the Flight call's first message). A repeat of the same request by the same caller
    /// within the same second gets the first one's verdict without classifying again.
    pub fn authorize_request(
        &self,
        facts: &RequestFacts<'_>,
        payload: &[u8],
        classify: impl FnOnce(&[u8]) -> Result<Vec<StatementAccess>, AuthzError>,
    ) -> Arc<Verdict> {
        let live = self.live.load();
        let key = Key {
            principal: facts.principal,
            source_ip: facts.source_ip,
            client_cert: facts.client_cert,
            method: facts.method,
            path: facts.path,
            payload,
        };
        if let Some(verdict) = live.decisions.get(&key, facts.now) {
            return verdict;
        }
        let verdict = Arc::new(match classify(payload) {
            Ok(accesses) => self.authorize_with(&live, facts, &accesses),
            Err(error) => Verdict::refused(error),
        });
        live.decisions.insert(&key, facts.now, &verdict);
        verdict
    }

    /// Every access must be allowed; the first denial is the answer. Not cached.
    pub fn authorize(&self, facts: &RequestFacts<'_>, accesses: &[StatementAccess]) -> Verdict {
        self.authorize_with(&self.live.load(), facts, accesses)
    }

    fn authorize_with(&self, live: &Live, facts: &RequestFacts<'_>, accesses: &[StatementAccess]) -> Verdict {
        let asks = asks(accesses);
        let scope = scope(&asks);
        if scope.len() > complexity::MAX_DATASETS {
            return Verdict::refused(AuthzError::Sql(complexity::TooComplex::Datasets.into()));
        }
        let enforced = match self.answer(&live.enforced, facts, &asks) {
            Ok(answer) => answer,
            Err(error) => return Verdict::refused(error),
        };
        let shadow = live.shadow.as_ref().map(|shadow| {
            // A shadow set that cannot even build the caller's entity refuses everything.
            self.answer(shadow, facts, &asks).unwrap_or_default()
        });
        let mut shadow_data = None;
        let outcome = match enforced.refused.and_then(|i| asks.get(i)) {
            None if enforced.allowed => {
                let describe = !accesses.is_empty() && accesses.iter().all(|a| a.endpoint == EndpointAction::Describe);
                let listing = describe.then(|| self.principal_view(&live.enforced, facts).ok()).flatten();
                let listing = listing.map(|view| self.listing(&live.enforced, &view, facts));
                // A listing shows each governed dataset's columns as the caller may see them.
                let data_scope = match &listing {
                    Some(listed) => [&scope[..], listed].concat(),
                    None => scope.to_vec(),
                };
                let data = self.data_policies(&live.enforced, facts, &data_scope);
                // The shadow set's rows and columns, kept only where they differ.
                shadow_data = match (&live.shadow, &shadow) {
                    (Some(set), Some(answer)) if answer.allowed && !data.is_empty() => {
                        Some(self.data_policies(set, facts, &data_scope)).filter(|theirs| *theirs != data)
                    }
                    _ => None,
                };
                let unlimited_rows = live.enforced.bundle.asks_unlimited_rows
                    && self.principal_view(&live.enforced, facts).is_ok_and(|view| {
                        self.evaluate(&view, facts, crate::query_limits::UNLIMITED_ROWS, &Resource::Endpoint).allowed
                    });
                let policy = Arc::clone(&live.enforced.bundle.fingerprint);
                Ok(Allowed { listing, policy, scope, data, unlimited_rows })
            }
            refused => Err(self.refusal(&live.enforced, facts, refused)),
        };
        Verdict { outcome, asks, enforced: Some(enforced), shadow, shadow_data }
    }

    /// The error a refused ask is answered with: 404 for a dataset the engine does not serve
    /// (a typo, not a refusal), else 403 naming the action and resource.
    fn refusal(&self, live: &Loaded, facts: &RequestFacts<'_>, refused: Option<&Ask>) -> AuthzError {
        let Some(ask) = refused else {
            return AuthzError::Denied { action: "any action", resource: format!("principal {}", facts.principal.id) };
        };
        match &ask.dataset {
            Some(dataset) => {
                let name = dataset.to_string();
                if live.bundle.served.as_ref().is_some_and(|served| !served.contains(&name)) {
                    return AuthzError::UnknownDataset(name);
                }
                AuthzError::Denied { action: ask.action, resource: format!("dataset {name}") }
            }
            None => AuthzError::Denied { action: ask.action, resource: format!("endpoint {}", facts.path) },
        }
    }

    /// The enforced set's answer to `asks`, not cached: what `gateway policy replay` asks of
    /// a candidate set for each recorded call.
    pub fn decide_asks(&self, facts: &RequestFacts<'_>, asks: &[Ask]) -> Answer {
        self.answer(&self.live.load().enforced, facts, asks).unwrap_or_default()
    }

    /// Decides `asks` in order against one set; the first refusal ends it.
    fn answer(&self, live: &Loaded, facts: &RequestFacts<'_>, asks: &[Ask]) -> Result<Answer, AuthzError> {
        let view = self.principal_view(live, facts)?;
        let mut policies = Vec::new();
        for (i, ask) in asks.iter().enumerate() {
            let evaluation = self.evaluate(&view, facts, ask.action, &ask.resource());
            for error in &evaluation.errors {
                // A policy that errors does not apply (Cedar's semantics); authors want to know.
                tracing::warn!(%error, action = ask.action, "a policy failed to evaluate");
            }
            if !evaluation.allowed {
                let mut forbids = evaluation.policies;
                forbids.sort();
                return Ok(Answer { allowed: false, policies: forbids, refused: Some(i) });
            }
            policies.extend(evaluation.policies);
        }
        policies.sort();
        policies.dedup();
        Ok(Answer { allowed: true, policies, refused: None })
    }

    /// The known datasets (entities of type `Dataset`) Cedar lets this caller `select`, for
    /// a catalog listing: a tenant does not even learn another tenant's table names.
    fn listing(&self, live: &Loaded, view: &PrincipalView, facts: &RequestFacts<'_>) -> Vec<String> {
        let mut names: Vec<String> = live
            .bundle
            .entities
            .iter()
            .map(Entity::uid)
            .filter(|uid| uid.type_name() == &self.types.dataset)
            .filter_map(|uid| {
                let name = uid.id().unescaped().to_string();
                let dataset = sql::DatasetName::parse_id(&name)?;
                let evaluation =
                    self.evaluate(view, facts, DatasetAction::Select.as_str(), &Resource::Dataset(dataset));
                evaluation.allowed.then_some(name)
            })
            .collect();
        names.sort();
        names
    }

    /// [`Self::data_policies`] under the enforced set, for the policy commands.
    pub(crate) fn decide_data(&self, facts: &RequestFacts<'_>, scope: &[String]) -> Arc<[DatasetPolicy]> {
        self.data_policies(&self.live.load().enforced, facts, scope)
    }

    /// The row and column decisions for the governed datasets `scope` reads, directly or
    /// through views ([`data_policy`]); empty when none is governed.
    fn data_policies(&self, live: &Loaded, facts: &RequestFacts<'_>, scope: &[String]) -> Arc<[DatasetPolicy]> {
        let governance = &live.bundle.governance;
        let touched = governance.touched(scope);
        if touched.is_empty() {
            return Arc::from(Vec::new());
        }
        let view = match self.principal_view(live, facts) {
            Ok(view) => view,
            // Without the caller's entity nothing can be decided: no row, every column denied.
            Err(_) => {
                return touched
                    .iter()
                    .map(|g| DatasetPolicy {
                        dataset: g.name.to_string(),
                        denied: g.columns.iter().map(|c| c.name.clone()).collect(),
                        masks: Vec::new(),
                        unmasked: Vec::new(),
                        rows: Some(identity::RowFilter::Bool(false)),
                        row_policies: Vec::new(),
                    })
                    .collect();
            }
        };
        let principal = self.principal_uid(facts.principal);
        let action = self.uid(&self.types.action, "select_row");
        let partial = view.partial.get_or_init(|| {
            PartialEntities::from_concrete(view.entities.clone(), &live.bundle.schema).map_err(|e| e.to_string())
        });
        let policies = view.policies.for_action("select_row");
        touched
            .iter()
            .map(|governed| {
                let allowed = |action: &str, column: &str| {
                    let resource = Resource::Column(governed.name.clone(), column.to_string());
                    self.evaluate(&view, facts, action, &resource).allowed
                };
                let question = partial.as_ref().ok().map(|entities| RowQuestion {
                    policies,
                    schema: &live.bundle.schema,
                    principal: &principal,
                    action: &action,
                    entities,
                });
                let rows = question.as_ref().map(|q| (q, self.contexts.context(facts, Some(&governed.name))));
                data_policy::decide(governed, &governance.masks, governance.alike_by_tags, &allowed, rows)
            })
            .collect()
    }

    /// The current set's lint findings at unix time `now` ([`lint`]).
    pub fn lint(&self, now: i64) -> Vec<lint::Finding> {
        let live = self.live.load();
        let bundle = &live.enforced.bundle;
        lint::lint(&bundle.policies, &bundle.schema, &bundle.governance, now)
    }

    /// Every policy's id (its `@id`, else `file#index`), sorted: what coverage is counted of.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.live.load().enforced.bundle.policies.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        ids
    }

    /// What the current set loaded but looks wrong (see [`PolicyBundle::warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        self.live.load().enforced.bundle.warnings.clone()
    }

    /// Whether the engine serves `dataset`; `None` when no engine configuration was given.
    pub fn serves(&self, dataset: &sql::DatasetName) -> Option<bool> {
        self.live.load().enforced.bundle.served.as_ref().map(|served| served.contains(&dataset.to_string()))
    }

    /// One Cedar request, for the policy commands. An action the schema does not declare is
    /// an error, not a deny: `read` for `select` is a typo to fix, not a decision.
    pub fn decide(
        &self,
        facts: &RequestFacts<'_>,
        action: &str,
        resource: &Resource,
    ) -> Result<Evaluation, AuthzError> {
        let live = Arc::clone(&self.live.load().enforced);
        let declared: Vec<String> = live.bundle.schema.actions().map(|a| a.id().unescaped().to_string()).collect();
        if !declared.iter().any(|a| a == action) {
            let mut declared = declared;
            declared.sort();
            return Err(AuthzError::Unsupported(format!(
                "unknown action {action:?}: the schema declares {}",
                declared.join(", ")
            )));
        }
        let view = self.principal_view(&live, facts)?;
        Ok(self.evaluate(&view, facts, action, resource))
    }

    fn evaluate(
        &self,
        view: &PrincipalView,
        facts: &RequestFacts<'_>,
        action: &str,
        resource: &Resource,
    ) -> Evaluation {
        let (uid, dataset) = match resource {
            Resource::Endpoint => (self.uid(&self.types.endpoint, facts.path), None),
            Resource::Dataset(dataset) => (self.uid(&self.types.dataset, &dataset.to_string()), Some(dataset)),
            Resource::Column(dataset, id) => (self.uid(&self.types.column, id), Some(dataset)),
            Resource::Row(row_type, dataset, _) => (self.uid(row_type, "row"), Some(dataset)),
        };
        // A row is not in the entity store: the request brings it.
        let row_entities = match row_entity(&uid, resource) {
            Ok(Some(row)) => match view.entities.clone().add_entities([row], None) {
                Ok(entities) => Some(entities),
                Err(error) => {
                    return Evaluation { allowed: false, policies: Vec::new(), errors: vec![error.to_string()] };
                }
            },
            Ok(None) => None,
            Err(error) => return Evaluation { allowed: false, policies: Vec::new(), errors: vec![error] },
        };
        let request = self.contexts.context(facts, dataset).and_then(|context| {
            let action = self.uid(&self.types.action, action);
            let principal = self.principal_uid(facts.principal);
            Request::new(principal, action, uid, context, None).map_err(|e| e.to_string())
        });
        let request = match request {
            Ok(request) => request,
            // Fail closed: a request Cedar cannot represent is denied.
            Err(error) => return Evaluation { allowed: false, policies: Vec::new(), errors: vec![error] },
        };
        let entities = row_entities.as_ref().unwrap_or(&view.entities);
        let response = self.cedar.is_authorized(&request, view.policies.for_action(action), entities);
        Evaluation {
            allowed: response.decision() == Decision::Allow,
            policies: response.diagnostics().reason().map(PolicyId::to_string).collect(),
            errors: response.diagnostics().errors().map(|e| e.to_string()).collect(),
        }
    }

    fn uid(&self, type_name: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
    }

    fn principal_uid(&self, principal: &Principal) -> EntityUid {
        let type_name = match principal.kind {
            PrincipalKind::User => &self.types.user,
            PrincipalKind::Service => &self.types.service,
            PrincipalKind::Workload => &self.types.workload,
        };
        self.uid(type_name, &principal.id)
    }

    /// The base entities plus this principal (groups as parents, email and tenant as
    /// attributes), and the policies that can apply to it; cached per principal for this
    /// policy set.
    fn principal_view(&self, live: &Loaded, facts: &RequestFacts<'_>) -> Result<Arc<PrincipalView>, AuthzError> {
        if let Some(view) = live.principals.get(facts.principal, facts.now) {
            return Ok(view);
        }
        let principal = facts.principal;
        let mut attrs = HashMap::new();
        if let Some(email) = &principal.email {
            attrs.insert("email".to_string(), RestrictedExpression::new_string(email.clone()));
        }
        if let Some(tenant) = &principal.tenant {
            attrs.insert("tenant".to_string(), RestrictedExpression::new_string(tenant.clone()));
        }
        let parents: HashSet<EntityUid> = principal.groups.iter().map(|g| self.uid(&self.types.group, g)).collect();
        let failed = |e: String| {
            tracing::error!(error = %e, principal = %principal.id, "cannot build the principal's entity");
            AuthzError::Denied { action: "any action", resource: format!("principal {}", principal.id) }
        };
        let uid = self.principal_uid(principal);
        let entity = Entity::new(uid.clone(), attrs, parents).map_err(|e| failed(e.to_string()))?;
        let entities = live.bundle.entities.clone().add_entities([entity], None).map_err(|e| failed(e.to_string()))?;
        let policies = live.bundle.for_principal(&uid, &entities).map_err(failed)?;
        let view = Arc::new(PrincipalView { entities, policies, partial: OnceLock::new() });
        live.principals.insert(principal.clone(), Arc::clone(&view), facts.now + PRINCIPAL_ENTITY_SECS, facts.now);
        Ok(view)
    }
}

/// The entity of a [`Resource::Row`] (whose uid is `uid`); `None` for other resources.
fn row_entity(uid: &EntityUid, resource: &Resource) -> Result<Option<Entity>, String> {
    let Resource::Row(_, _, attrs) = resource else { return Ok(None) };
    let attrs: HashMap<String, RestrictedExpression> = attrs.iter().cloned().collect();
    Entity::new(uid.clone(), attrs, HashSet::new()).map(Some).map_err(|e| e.to_string())
}
