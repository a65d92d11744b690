//! Authorization with Cedar. Each request becomes one Cedar request for its endpoint (the
//! route or Flight RPC, with the statement's endpoint action) plus one per dataset its SQL
//! touches; all must be allowed (Cedar's default is deny).
//!
//! Policies, schema and entities are loaded once ([`policies::PolicyBundle`]) and swapped
//! whole on reload, so a request never sees half a policy set and nothing is parsed per
//! request. The principal's entity (its groups as parents, its attributes) and the policies
//! that can apply to it are built once per principal and cached with the bundle they were
//! built against; contexts once per second per request shape; whole outcomes for the second
//! ([`decisions`]).

mod context;
pub mod decisions;
pub mod flight;
pub mod lint;
pub mod policies;
pub mod served;
pub mod sql;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{
    Authorizer as CedarAuthorizer, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, Request,
    RestrictedExpression,
};
use identity::{ExpiringCache, Principal, PrincipalKind};

use crate::config::AuthorizationConfig;
use context::ContextCache;
use decisions::{DecisionCache, Key};
use policies::{EngineCatalog, LoadError, PolicyBundle, PrincipalPolicies};
pub use sql::{DatasetAction, EndpointAction, NameDefaults, SqlError, StatementAccess};

/// Why a request was not authorized. Statuses are mapped in [`crate::error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// Cedar said no. Names the action and resource, never the policy text.
    #[error("{action} on {resource} is not allowed")]
    Denied { action: &'static str, resource: String },
    #[error("{0}")]
    Sql(#[from] SqlError),
    /// A request the gateway cannot decode (bad protobuf or gRPC framing, non-UTF-8 SQL).
    #[error("{0}")]
    Malformed(String),
    /// A call the gateway does not classify (fail closed).
    #[error("{0}")]
    Unsupported(String),
    /// A route the gateway does not serve.
    #[error("{0}")]
    NotRouted(String),
    /// A dataset the engine does not serve (known from `authorization.engine_config`) and
    /// that no policy allows: a typo or a table not onboarded yet, not a refusal.
    #[error("dataset {0} does not exist (the engine does not serve it)")]
    UnknownDataset(String),
}

/// What the request's caller and transport look like to policy.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    pub principal: &'a Principal,
    pub source_ip: IpAddr,
    /// A verified client certificate came with the connection.
    pub client_cert: bool,
    pub method: &'a str,
    pub path: &'a str,
    pub now: u64,
}

/// What a single Cedar request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The endpoint is the request's path ([`RequestFacts::path`]).
    Endpoint,
    Dataset(sql::DatasetName),
}

/// One Cedar decision, with its reasons: for `gateway policy test` and `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub allowed: bool,
    /// The determining policies: the permits that allowed, or the forbids that denied.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (and so did not apply).
    pub errors: Vec<String>,
}

/// An allowed request: the policies that allowed it, for the audit stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    pub policies: Vec<String>,
    /// The endpoint actions asked about (`query`, `write`, ...).
    pub actions: Vec<&'static str>,
    /// Every dataset the request touches, as `catalog.schema.table`.
    pub datasets: Vec<String>,
    /// For a request that only reads the catalog (every endpoint action `describe`): the
    /// datasets the caller may `select`, which is all the engine will list to it.
    pub listing: Option<Vec<String>>,
}

/// One loaded policy set and what was derived from it.
struct Loaded {
    bundle: PolicyBundle,
    /// Base entities plus each principal's own entity, per principal.
    principals: ExpiringCache<Principal, Arc<PrincipalView>>,
    /// Whole outcomes for this second (see [`decisions`]).
    decisions: DecisionCache,
}

impl Loaded {
    fn new(bundle: PolicyBundle, cache_entries: usize) -> Self {
        Self { bundle, principals: ExpiringCache::new(cache_entries), decisions: DecisionCache::new(cache_entries) }
    }
}

/// What is built once per principal: its entity store and the policies that can apply to it.
struct PrincipalView {
    entities: Entities,
    policies: PrincipalPolicies,
}

/// The authorize stage's state: the live policy set, swapped atomically on reload.
pub struct Authorizer {
    dir: PathBuf,
    engine_config: Option<PathBuf>,
    live: ArcSwap<Loaded>,
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
    action: EntityTypeName,
}

/// How long a principal's entity is reused (groups come from the credential, which may change).
const PRINCIPAL_ENTITY_SECS: u64 = 60;

impl Authorizer {
    pub fn load(config: &AuthorizationConfig) -> Result<Self, LoadError> {
        let defaults = NameDefaults { catalog: config.default_catalog.clone(), schema: config.default_schema.clone() };
        let engine = config.engine_config.as_deref().map(|config| EngineCatalog { config, defaults: &defaults });
        let bundle = PolicyBundle::load_with(&config.policies, engine)?;
        let parse = |name: &str| EntityTypeName::from_str(name).map_err(|e| LoadError(vec![e.to_string()]));
        let types = Types {
            user: parse("User")?,
            service: parse("Service")?,
            workload: parse("Workload")?,
            group: parse("Group")?,
            endpoint: parse("Endpoint")?,
            dataset: parse("Dataset")?,
            action: parse("Action")?,
        };
        Ok(Self {
            dir: config.policies.to_path_buf(),
            engine_config: config.engine_config.as_deref().map(Path::to_path_buf),
            live: ArcSwap::from_pointee(Loaded::new(bundle, config.principal_cache_entries)),
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

    /// The files the current policy set was read from.
    pub fn files(&self) -> Vec<PathBuf> {
        self.live.load().bundle.files.clone()
    }

    /// Loads the directory again; on success the new set serves the next request, on failure
    /// the old one keeps serving and the error says what is wrong where.
    pub fn reload(&self) -> Result<usize, LoadError> {
        let engine = self.engine_config.as_deref().map(|config| EngineCatalog { config, defaults: &self.defaults });
        let bundle = PolicyBundle::load_with(&self.dir, engine)?;
        let count = bundle.policies.policies().count();
        self.live.store(Arc::new(Loaded::new(bundle, self.cache_entries)));
        Ok(count)
    }

    /// Authorizes a request whose meaning `classify` extracts from `payload` (the SQL body,
    /// or the Flight call's first message). A repeat of the same request by the same caller
    /// within the same second gets the first one's outcome without classifying again.
    pub fn authorize_request(
        &self,
        facts: &RequestFacts<'_>,
        payload: &[u8],
        classify: impl FnOnce(&[u8]) -> Result<Vec<StatementAccess>, AuthzError>,
    ) -> Result<Allowed, AuthzError> {
        let live = self.live.load();
        let key = Key {
            principal: facts.principal,
            source_ip: facts.source_ip,
            client_cert: facts.client_cert,
            method: facts.method,
            path: facts.path,
            payload,
        };
        if let Some(outcome) = live.decisions.get(&key, facts.now) {
            return outcome;
        }
        let outcome = classify(payload).and_then(|accesses| self.authorize_with(&live, facts, &accesses));
        live.decisions.insert(&key, facts.now, &outcome);
        outcome
    }

    /// Every access must be allowed; the first denial is the answer. Not cached.
    pub fn authorize(&self, facts: &RequestFacts<'_>, accesses: &[StatementAccess]) -> Result<Allowed, AuthzError> {
        self.authorize_with(&self.live.load(), facts, accesses)
    }

    fn authorize_with(
        &self,
        live: &Loaded,
        facts: &RequestFacts<'_>,
        accesses: &[StatementAccess],
    ) -> Result<Allowed, AuthzError> {
        let view = self.principal_view(live, facts)?;
        let mut allowed = Allowed::default();
        let mut asked: HashSet<(&'static str, Option<&sql::DatasetName>)> = HashSet::new();
        for access in accesses {
            let endpoint = access.endpoint.as_str();
            let datasets = access.datasets.iter().map(|(action, dataset)| (action.as_str(), Some(dataset)));
            for (action, dataset) in std::iter::once((endpoint, None)).chain(datasets) {
                if !asked.insert((action, dataset)) {
                    continue;
                }
                let resource = dataset.map_or(Resource::Endpoint, |d| Resource::Dataset(d.clone()));
                let evaluation = self.evaluate(&view, facts, action, &resource);
                for error in &evaluation.errors {
                    // A policy that errors does not apply (Cedar's semantics); authors want to know.
                    tracing::warn!(%error, action, "a policy failed to evaluate");
                }
                if !evaluation.allowed {
                    if let (Some(d), Some(served)) = (dataset, &live.bundle.served) {
                        let name = d.to_string();
                        if !served.contains(&name) {
                            return Err(AuthzError::UnknownDataset(name));
                        }
                    }
                    let resource = match dataset {
                        Some(d) => format!("dataset {d}"),
                        None => format!("endpoint {}", facts.path),
                    };
                    return Err(AuthzError::Denied { action, resource });
                }
                allowed.policies.extend(evaluation.policies);
                match dataset {
                    Some(d) => allowed.datasets.push(d.to_string()),
                    None => allowed.actions.push(action),
                }
            }
        }
        allowed.policies.sort();
        allowed.policies.dedup();
        allowed.datasets.sort();
        allowed.datasets.dedup();
        if !accesses.is_empty() && accesses.iter().all(|a| a.endpoint == EndpointAction::Describe) {
            allowed.listing = Some(self.listing(live, &view, facts));
        }
        Ok(allowed)
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

    /// The current set's lint findings at unix time `now` ([`lint`]).
    pub fn lint(&self, now: i64) -> Vec<lint::Finding> {
        let live = self.live.load();
        lint::lint(&live.bundle.policies, &live.bundle.schema, now)
    }

    /// Every policy's id (its `@id`, else `file#index`), sorted: what coverage is counted of.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.live.load().bundle.policies.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        ids
    }

    /// What the current set loaded but looks wrong (see [`PolicyBundle::warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        self.live.load().bundle.warnings.clone()
    }

    /// Whether the engine serves `dataset`; `None` when no engine configuration was given.
    pub fn serves(&self, dataset: &sql::DatasetName) -> Option<bool> {
        self.live.load().bundle.served.as_ref().map(|served| served.contains(&dataset.to_string()))
    }

    /// One Cedar request, for the policy commands. An action the schema does not declare is
    /// an error, not a deny: `read` for `select` is a typo to fix, not a decision.
    pub fn decide(
        &self,
        facts: &RequestFacts<'_>,
        action: &str,
        resource: &Resource,
    ) -> Result<Evaluation, AuthzError> {
        let live = self.live.load();
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
        let (resource, dataset) = match resource {
            Resource::Endpoint => (self.uid(&self.types.endpoint, facts.path), None),
            Resource::Dataset(dataset) => (self.uid(&self.types.dataset, &dataset.to_string()), Some(dataset)),
        };
        let request = self.contexts.context(facts, dataset).and_then(|context| {
            let action = self.uid(&self.types.action, action);
            let principal = self.principal_uid(facts.principal);
            Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())
        });
        let request = match request {
            Ok(request) => request,
            // Fail closed: a request Cedar cannot represent is denied.
            Err(error) => return Evaluation { allowed: false, policies: Vec::new(), errors: vec![error] },
        };
        let response = self.cedar.is_authorized(&request, view.policies.for_action(action), &view.entities);
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
        let view = Arc::new(PrincipalView { entities, policies });
        live.principals.insert(principal.clone(), Arc::clone(&view), facts.now + PRINCIPAL_ENTITY_SECS, facts.now);
        Ok(view)
    }
}
