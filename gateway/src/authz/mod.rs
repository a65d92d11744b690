//! Authorization with Cedar. Each request becomes one Cedar request for its endpoint (the
//! route or Flight RPC, with the statement's endpoint action) plus one per dataset its SQL
//! touches; all must be allowed (Cedar's default is deny).
//!
//! Policies, schema and entities are loaded once ([`policies::PolicyBundle`]) and swapped
//! whole on reload, so a request never sees half a policy set and nothing is parsed per
//! request. The principal's entity (its groups as parents, its attributes) and the policies
//! that can apply to it are built once per principal and cached with the bundle they were
//! built against; contexts once per second per request shape; whole verdicts for the second
//! ([`decisions`]).
//!
//! A second, *shadow* policy set (`authorization.shadow`) can be loaded beside the enforced
//! one: every call is decided by both, only the enforced answer counts, and where the two
//! disagree the audit event and a metric say so. Its answer rides in the same [`Verdict`],
//! so a cached repeat costs the shadow set nothing either.

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
use std::sync::{Arc, Mutex, PoisonError};

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

/// An allowed request: what the stamp needs beyond the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    /// For a request that only reads the catalog (every endpoint action `describe`): the
    /// datasets the caller may `select`, which is all the engine will list to it.
    pub listing: Option<Vec<String>>,
    /// The fingerprint of the policy set that allowed the call ([`PolicyBundle::fingerprint`]).
    pub policy: Arc<str>,
    /// Every dataset the call's statement touches, sorted, each once: the engine resolves
    /// no other table for it (see `identity`'s stamp `scope`).
    pub scope: Arc<[String]>,
}

/// One Cedar request a call implies: an endpoint action (on the request's path) or a
/// dataset action (on that dataset).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ask {
    pub action: &'static str,
    pub dataset: Option<sql::DatasetName>,
}

impl Ask {
    /// The Cedar resource this ask is about.
    pub fn resource(&self) -> Resource {
        self.dataset.clone().map_or(Resource::Endpoint, Resource::Dataset)
    }
}

/// One policy set's answer to a call: the asks are decided in order and the first one
/// refused ends it, as the gateway enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub allowed: bool,
    /// The determining policies: every permit that allowed an ask, or the forbids that
    /// refused the refused one (none for Cedar's default deny). Sorted, each once.
    pub policies: Vec<String>,
    /// The index (into [`Verdict::asks`]) of the ask that was refused.
    pub refused: Option<usize>,
}

/// Everything authorizing one call found, kept whole for the decision cache and the audit
/// event: the outcome the gateway enforces, every Cedar request the call implies (all of
/// them, also after a refusal, so a replay can ask each again), and each set's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Result<Allowed, AuthzError>,
    /// Empty when the call could not be classified (bad SQL, an unknown RPC, ...).
    pub asks: Vec<Ask>,
    /// The enforced set's answer; `None` when Cedar was never asked.
    pub enforced: Option<Answer>,
    /// The shadow set's answer, when a shadow set is configured and Cedar was asked.
    pub shadow: Option<Answer>,
}

impl Verdict {
    fn refused(error: AuthzError) -> Self {
        Self { outcome: Err(error), asks: Vec::new(), enforced: None, shadow: None }
    }

    /// `(enforced allowed, shadow allowed)` when the two sets decided differently.
    pub fn disagreement(&self) -> Option<(bool, bool)> {
        let (enforced, shadow) = (self.enforced.as_ref()?, self.shadow.as_ref()?);
        (enforced.allowed != shadow.allowed).then_some((enforced.allowed, shadow.allowed))
    }
}

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
        PolicyBundle::load_with(dir, engine)
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
        let outcome = match enforced.refused.and_then(|i| asks.get(i)) {
            None if enforced.allowed => {
                let describe = !accesses.is_empty() && accesses.iter().all(|a| a.endpoint == EndpointAction::Describe);
                let listing = describe.then(|| self.principal_view(&live.enforced, facts).ok()).flatten();
                Ok(Allowed {
                    listing: listing.map(|view| self.listing(&live.enforced, &view, facts)),
                    policy: Arc::clone(&live.enforced.bundle.fingerprint),
                    scope,
                })
            }
            refused => Err(self.refusal(&live.enforced, facts, refused)),
        };
        Verdict { outcome, asks, enforced: Some(enforced), shadow }
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

    /// The current set's lint findings at unix time `now` ([`lint`]).
    pub fn lint(&self, now: i64) -> Vec<lint::Finding> {
        let live = self.live.load();
        lint::lint(&live.enforced.bundle.policies, &live.enforced.bundle.schema, now)
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

/// Every Cedar request `accesses` imply, in order, each once: per statement its endpoint
/// action, then each dataset action.
/// The datasets `asks` name, sorted, each once: a stamp's `scope`.
fn scope(asks: &[Ask]) -> Arc<[String]> {
    let mut names: Vec<String> = asks.iter().filter_map(|a| a.dataset.as_ref().map(ToString::to_string)).collect();
    names.sort();
    names.dedup();
    Arc::from(names)
}

fn asks(accesses: &[StatementAccess]) -> Vec<Ask> {
    let mut asks: Vec<Ask> = Vec::new();
    for access in accesses {
        let endpoint = Ask { action: access.endpoint.as_str(), dataset: None };
        let datasets = access
            .datasets
            .iter()
            .map(|(action, dataset)| Ask { action: action.as_str(), dataset: Some(dataset.clone()) });
        for ask in std::iter::once(endpoint).chain(datasets) {
            if !asks.contains(&ask) {
                asks.push(ask);
            }
        }
    }
    asks
}
