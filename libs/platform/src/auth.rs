//! Bearer-token authentication and per-method authorization.
//!
//! Tokens are HS256 JWTs signed with `AUTH_JWT_SECRET`. Every RPC path is looked up in
//! the service's permission table; a path not in the table is refused (deny by default).
//! Health and reflection are open so probes and `grpcurl list` need no token.
//! The verified [`Caller`] is put in the request extensions for handlers to read.

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tonic::{Code, Status, body::Body};

use crate::status;

pub const ISSUER: &str = "microloan";
/// Longest-lived token `mint` will issue: 90 days, the JWT secret's rotation period, so
/// the end-of-day CronJob's stored token can outlive one rotation at most. Dev tokens
/// default to an hour.
pub const TOKEN_TTL_MAX: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Clock skew tolerated between the minting host and the verifying pod.
const LEEWAY_SECONDS: u64 = 5;
/// Longest `authorization` header considered; anything larger is refused unparsed.
const AUTHORIZATION_BYTES_MAX: usize = 8 * 1024;
/// Verified tokens remembered per generation (two generations are kept, see
/// [`VerifiedTokens`]): at most ~2 × 4,096 × (token + caller) ≈ 4 MB.
const VERIFIED_TOKENS_PER_GENERATION: usize = 4_096;

/// Paths served without a token.
const OPEN_PATH_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A person running the platform (grpcurl, back office).
    Operator,
    /// Another microloan service or job.
    Service,
    /// An end customer; reaches only the data of the `customer_id` in the token.
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Service => "service",
            Self::Customer => "customer",
        }
    }
}

/// Every `ErrorInfo.reason` the auth layer and [`Caller`] raise; each is a value of
/// `microloan.common.v1.ErrorReason` (checked by the services' tests).
pub const ERROR_REASONS: [&str; 6] = [
    "TOKEN_MISSING",
    "TOKEN_INVALID",
    "TOKEN_BAD_SIGNATURE",
    "TOKEN_EXPIRED",
    "ROLE_NOT_ALLOWED",
    "NOT_RESOURCE_OWNER",
];

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "operator" => Ok(Self::Operator),
            "service" => Ok(Self::Service),
            "customer" => Ok(Self::Customer),
            other => Err(format!(
                "`{other}` is not one of operator, service, customer"
            )),
        }
    }
}

/// The JWT claims microloan issues and accepts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// Who: an operator's login, a service's name, or the customer id.
    pub sub: String,
    pub role: Role,
    /// Present exactly when `role` is `customer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub iss: String,
    /// Seconds since the Unix epoch.
    pub iat: u64,
    pub exp: u64,
}

/// The authenticated caller of one request, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
    pub customer_id: Option<String>,
}

impl Caller {
    /// The caller from a request the auth layer let through.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
    }

    /// A customer may only touch their own data; operators and services may touch any.
    /// Each service answers `false` with its own PERMISSION_DENIED NOT_RESOURCE_OWNER.
    pub fn may_access_customer(&self, customer_id: uuid::Uuid) -> bool {
        match (self.role, self.customer_id.as_deref()) {
            (Role::Customer, own) => {
                own.and_then(|own| uuid::Uuid::parse_str(own).ok()) == Some(customer_id)
            }
            (Role::Operator | Role::Service, _) => true,
        }
    }

    /// The caller's `request_id` scope, `role:subject`, so that two callers' keys never
    /// collide (platform::idempotency).
    pub fn idempotency_scope(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.subject)
    }
}

/// Why a bearer token was refused: an UNAUTHENTICATED reason of errors.proto.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenRejected {
    /// `TOKEN_MISSING`, `TOKEN_INVALID`, `TOKEN_BAD_SIGNATURE` or `TOKEN_EXPIRED`.
    pub reason: &'static str,
    pub message: String,
}

impl TokenRejected {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// UNAUTHENTICATED with an `ErrorInfo` in the serving service's `domain`.
    pub fn into_status(self, domain: &str) -> Status {
        status::with_reason(domain, Code::Unauthenticated, self.message, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("role customer needs a customer id")]
    CustomerIdMissing,
    #[error("only role customer carries a customer id")]
    CustomerIdUnexpected,
    #[error("ttl must be between 1 s and {} s", TOKEN_TTL_MAX.as_secs())]
    TtlOutOfRange,
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// Signs and verifies tokens with one HS256 secret. During a rotation a second,
/// verify-only secret is accepted too, so tokens minted before the switch keep working
/// until they expire (see docs/deploy.md).
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    decoding_previous: Option<DecodingKey>,
    validation: Validation,
    verified: Arc<VerifiedTokens>,
}

/// Tokens that passed [`TokenKeys::verify`], by their exact text, with their expiry: a
/// client sends the same token on every call, and decoding and checking it (base64,
/// JSON twice, HMAC) was the largest share of a cache-hit GetCreditLine's CPU in
/// account (issue 10 profile: ~8%). Only successes are kept and only under the very
/// same bytes, so a token with another signature, or any other change, is a miss and
/// fully verified; a hit is refused again once `exp` has passed (with the same
/// leeway), which is the only check whose answer changes with time (`nbf` and `iat`
/// are not checked). Bounded: two generations of at most `per_generation` entries;
/// when the current one fills it becomes the previous one and the oldest is dropped,
/// and a hit in the previous one moves back to the current (least recently used
/// tokens go first).
struct VerifiedTokens {
    per_generation: usize,
    generations: std::sync::Mutex<[Generation; 2]>,
}

/// Verified tokens and their (caller, `exp`).
type Generation = HashMap<Box<str>, (Caller, u64)>;

impl VerifiedTokens {
    fn new(per_generation: usize) -> Self {
        Self {
            per_generation: per_generation.max(1),
            generations: std::sync::Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Generation; 2]> {
        // A panic while holding the lock leaves the maps consistent (no multi-step
        // updates are observable), so a poisoned lock is still usable.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The caller of `token` if it was verified and is not expired at `now`;
    /// `Err(())` when it was verified but has expired since.
    fn get(&self, token: &str, now: u64) -> Option<Result<Caller, ()>> {
        let mut generations = self.lock();
        let [current, previous] = &mut *generations;
        let (caller, exp) = match current.get(token) {
            Some(found) => found.clone(),
            None => {
                let found = previous.remove_entry(token)?;
                let value = found.1.clone();
                Self::push(self.per_generation, current, previous, found.0, found.1);
                value
            }
        };
        // jsonwebtoken's rule: expired when exp < now - leeway.
        if exp.saturating_add(LEEWAY_SECONDS) < now {
            return Some(Err(()));
        }
        Some(Ok(caller))
    }

    fn insert(&self, token: &str, caller: Caller, exp: u64) {
        let mut generations = self.lock();
        let [current, previous] = &mut *generations;
        Self::push(
            self.per_generation,
            current,
            previous,
            token.into(),
            (caller, exp),
        );
    }

    fn push(
        per_generation: usize,
        current: &mut Generation,
        previous: &mut Generation,
        token: Box<str>,
        entry: (Caller, u64),
    ) {
        if current.len() >= per_generation {
            *previous = std::mem::take(current);
        }
        current.insert(token, entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.lock();
        generations[0].len() + generations[1].len()
    }
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(***)")
    }
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            decoding_previous: None,
            validation,
            verified: Arc::new(VerifiedTokens::new(VERIFIED_TOKENS_PER_GENERATION)),
        }
    }

    /// Also accept tokens signed with `secret` (never sign with it).
    pub fn also_verifying(mut self, secret: &[u8]) -> Self {
        self.decoding_previous = Some(DecodingKey::from_secret(secret));
        self
    }

    /// The keys of a service: `AUTH_JWT_SECRET` plus `AUTH_JWT_VERIFY_ONLY_SECRET`.
    pub fn from_config(config: &crate::config::CommonConfig) -> Self {
        let keys = Self::from_secret(config.auth_jwt_secret.expose().as_bytes());
        match &config.auth_jwt_verify_only_secret {
            Some(previous) => keys.also_verifying(previous.expose().as_bytes()),
            None => keys,
        }
    }

    pub fn mint(
        &self,
        subject: &str,
        role: Role,
        customer_id: Option<&str>,
        ttl: Duration,
    ) -> Result<String, MintError> {
        match (role, customer_id) {
            (Role::Customer, None) => return Err(MintError::CustomerIdMissing),
            (Role::Operator | Role::Service, Some(_)) => {
                return Err(MintError::CustomerIdUnexpected);
            }
            _ => {}
        }
        if ttl.is_zero() || ttl > TOKEN_TTL_MAX {
            return Err(MintError::TtlOutOfRange);
        }
        let now = unix_now();
        self.sign(&Claims {
            sub: subject.to_owned(),
            role,
            customer_id: customer_id.map(str::to_owned),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
        })
    }

    /// Signs any claims as given; `mint` is the checked way to make a token.
    pub fn sign(&self, claims: &Claims) -> Result<String, MintError> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// The caller of a valid token; a token verified before is answered from
    /// [`VerifiedTokens`] (same result, see there).
    pub fn verify(&self, token: &str) -> Result<Caller, TokenRejected> {
        self.verify_at(token, unix_now())
    }

    /// [`Self::verify`] with the remembered tokens' expiry checked against `now`.
    fn verify_at(&self, token: &str, now: u64) -> Result<Caller, TokenRejected> {
        match self.verified.get(token, now) {
            Some(Ok(caller)) => return Ok(caller),
            Some(Err(())) => {
                let err = jsonwebtoken::errors::Error::from(
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature,
                );
                return Err(TokenRejected::new(
                    "TOKEN_EXPIRED",
                    format!("bearer token rejected: {err}"),
                ));
            }
            None => {}
        }
        let (caller, exp) = self.verify_uncached(token)?;
        self.verified.insert(token, caller.clone(), exp);
        Ok(caller)
    }

    fn verify_uncached(&self, token: &str) -> Result<(Caller, u64), TokenRejected> {
        let mut decoded = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation);
        if let (Err(err), Some(previous)) = (&decoded, &self.decoding_previous)
            && *err.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature
        {
            decoded = jsonwebtoken::decode::<Claims>(token, previous, &self.validation);
        }
        let data = decoded.map_err(|err| {
            let reason = match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "TOKEN_EXPIRED",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "TOKEN_BAD_SIGNATURE",
                _ => "TOKEN_INVALID",
            };
            TokenRejected::new(reason, format!("bearer token rejected: {err}"))
        })?;
        let claims = data.claims;
        if (claims.role == Role::Customer) != claims.customer_id.is_some() {
            return Err(TokenRejected::new(
                "TOKEN_INVALID",
                "customer_id must be present exactly for role customer",
            ));
        }
        Ok((
            Caller {
                subject: claims.sub,
                role: claims.role,
                customer_id: claims.customer_id,
            },
            claims.exp,
        ))
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Which roles may call each RPC of one service.
#[derive(Debug, Clone, Default)]
pub struct PermissionTable {
    roles_by_path: HashMap<String, &'static [Role]>,
    /// `ErrorInfo.domain` of the refusals: the service's, `microloan.<service>`.
    error_domain: String,
}

impl PermissionTable {
    /// `service` is the full proto name (`microloan.ledger.v1.LedgerService`); each
    /// entry is a method name and the roles allowed to call it.
    pub fn new(service: &str, entries: &[(&'static str, &'static [Role])]) -> Self {
        let mut roles_by_path = HashMap::with_capacity(entries.len());
        for (method, roles) in entries {
            let previous = roles_by_path.insert(format!("/{service}/{method}"), *roles);
            assert!(previous.is_none(), "{method} listed twice");
        }
        Self {
            roles_by_path,
            error_domain: status::error_domain_of_proto_service(service),
        }
    }

    /// The serving service's error domain, e.g. `microloan.ledger`.
    pub fn error_domain(&self) -> &str {
        &self.error_domain
    }

    pub fn roles(&self, path: &str) -> Option<&'static [Role]> {
        self.roles_by_path.get(path).copied()
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.roles_by_path.keys().map(String::as_str)
    }
}

pub fn is_open_path(path: &str) -> bool {
    OPEN_PATH_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// Checks one request's token against the table; `Ok(None)` for open paths.
pub fn authorize(
    keys: &TokenKeys,
    table: &PermissionTable,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<Option<Caller>, Status> {
    if is_open_path(path) {
        return Ok(None);
    }
    let domain = table.error_domain();
    let caller = bearer_token(headers)
        .and_then(|token| keys.verify(token))
        .map_err(|rejected| rejected.into_status(domain))?;
    let allowed = table.roles(path).unwrap_or(&[]);
    if !allowed.contains(&caller.role) {
        let role = caller.role.as_str();
        return Err(status::with_reason_and_metadata(
            domain,
            Code::PermissionDenied,
            format!("role {role} may not call {path}"),
            "ROLE_NOT_ALLOWED",
            &[("role", role)],
        ));
    }
    Ok(Some(caller))
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer_token(headers: &http::HeaderMap) -> Result<&str, TokenRejected> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            TokenRejected::new(
                "TOKEN_MISSING",
                "missing `authorization: Bearer <token>` metadata",
            )
        })?
        .as_bytes();
    if header.len() > AUTHORIZATION_BYTES_MAX {
        return Err(TokenRejected::new(
            "TOKEN_INVALID",
            "authorization metadata is too large",
        ));
    }
    std::str::from_utf8(header)
        .ok()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            TokenRejected::new(
                "TOKEN_INVALID",
                "authorization metadata must be `Bearer <token>`",
            )
        })
}

/// Tower layer that runs [`authorize`] before the service sees the request.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    shared: Arc<(TokenKeys, PermissionTable)>,
}

impl AuthLayer {
    pub fn new(keys: TokenKeys, table: PermissionTable) -> Self {
        Self {
            shared: Arc::new((keys, table)),
        }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    shared: Arc<(TokenKeys, PermissionTable)>,
}

impl<S> tower_service::Service<http::Request<Body>> for AuthService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let (keys, table) = &*self.shared;
        match authorize(keys, table, request.uri().path(), request.headers()) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => Box::pin(futures::future::ready(Ok(status.into_http()))),
        }
    }
}

/// The method names of `service` (full proto name) in an encoded descriptor set.
pub fn methods_in_descriptor(file_descriptor_set: &[u8], service: &str) -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(file_descriptor_set)
        .expect("descriptor set decodes");
    set.file
        .iter()
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service
                .iter()
                .filter(move |candidate| format!("{package}.{}", candidate.name()) == service)
        })
        .flat_map(|found| found.method.iter().map(|method| method.name().to_owned()))
        .collect()
}

/// Panics unless `table` lists exactly the RPCs `service` declares: a new RPC without
/// a permission entry would be unreachable (deny by default), a stale entry misleads.
pub fn assert_table_matches_descriptor(
    table: &PermissionTable,
    file_descriptor_set: &[u8],
    service: &str,
) {
    let mut declared: Vec<String> = methods_in_descriptor(file_descriptor_set, service)
        .into_iter()
        .map(|method| format!("/{service}/{method}"))
        .collect();
    declared.sort();
    let mut listed: Vec<String> = table.paths().map(str::to_owned).collect();
    listed.sort();
    assert!(
        !declared.is_empty(),
        "{service} not found in descriptor set"
    );
    assert_eq!(listed, declared, "permission table of {service}");
}

/// The roles each RPC of `service` documents on the `Roles:` line of its proto comment
/// (`// Roles: customer (own only), operator, service. …`): the words before the first
/// period, parenthesised qualifiers dropped. Needs a descriptor set built with source
/// info (protox keeps comments). Panics on a method without a parsable `Roles:` line.
pub fn documented_roles(file_descriptor_set: &[u8], service: &str) -> Vec<(String, Vec<Role>)> {
    use prost::Message;
    /// Field numbers of `FileDescriptorProto.service` and `ServiceDescriptorProto.method`
    /// in source-info paths.
    const FILE_SERVICE_FIELD: i32 = 6;
    const SERVICE_METHOD_FIELD: i32 = 2;
    let set = prost_types::FileDescriptorSet::decode(file_descriptor_set)
        .expect("descriptor set decodes");
    let mut documented = Vec::new();
    for file in &set.file {
        let locations = file
            .source_code_info
            .as_ref()
            .map(|info| info.location.as_slice())
            .unwrap_or_default();
        for (service_index, candidate) in file.service.iter().enumerate() {
            if format!("{}.{}", file.package(), candidate.name()) != service {
                continue;
            }
            for (method_index, method) in candidate.method.iter().enumerate() {
                let path = [
                    FILE_SERVICE_FIELD,
                    i32::try_from(service_index).expect("few services"),
                    SERVICE_METHOD_FIELD,
                    i32::try_from(method_index).expect("few methods"),
                ];
                let comment = locations
                    .iter()
                    .find(|location| location.path == path)
                    .map(|location| location.leading_comments())
                    .unwrap_or_default();
                let roles = parse_roles_line(comment)
                    .unwrap_or_else(|err| panic!("{service}/{}: {err}", method.name()));
                documented.push((method.name().to_owned(), roles));
            }
        }
    }
    documented
}

/// The roles named on the `Roles:` line of one RPC comment.
fn parse_roles_line(comment: &str) -> Result<Vec<Role>, String> {
    let line = comment
        .lines()
        .find_map(|line| line.trim().strip_prefix("Roles:"))
        .ok_or("no `Roles:` line in the RPC comment")?;
    let sentence = line.split('.').next().unwrap_or_default();
    // Drop "(own only; IN_APP only)" and the like: qualifiers, not roles.
    let mut unqualified = String::with_capacity(sentence.len());
    let mut depth = 0_u32;
    for character in sentence.chars() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => unqualified.push(character),
            _ => {}
        }
    }
    let mut roles: Vec<Role> = unqualified
        .split(',')
        .map(|word| word.trim().parse::<Role>())
        .collect::<Result<_, _>>()?;
    roles.sort_by_key(|role| role.as_str());
    roles.dedup();
    if roles.is_empty() {
        return Err("the `Roles:` line names no role".to_owned());
    }
    Ok(roles)
}

/// Panics unless `table` lists exactly the RPCs of `service` and grants each exactly the
/// roles its proto comment documents: the one check every service's table gets.
pub fn assert_table_matches_proto(
    table: &PermissionTable,
    file_descriptor_set: &[u8],
    service: &str,
) {
    assert_table_matches_descriptor(table, file_descriptor_set, service);
    assert_table_grants_documented_roles(table, file_descriptor_set, service);
}

/// Panics unless `table` grants every RPC of `service` exactly the roles its proto
/// comment documents, so the contract clients read and the code can never drift.
pub fn assert_table_grants_documented_roles(
    table: &PermissionTable,
    file_descriptor_set: &[u8],
    service: &str,
) {
    let documented = documented_roles(file_descriptor_set, service);
    assert!(
        !documented.is_empty(),
        "{service} not found in descriptor set"
    );
    let mismatches: Vec<String> = documented
        .iter()
        .filter_map(|(method, want)| {
            let mut granted = table
                .roles(&format!("/{service}/{method}"))
                .unwrap_or(&[])
                .to_vec();
            granted.sort_by_key(|role| role.as_str());
            (granted != *want)
                .then(|| format!("{method}: documented {want:?}, granted {granted:?}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "permission table of {service} disagrees with the proto:\n{}",
        mismatches.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const PATH: &str = "/microloan.ledger.v1.LedgerService/RunEndOfDay";

    fn table() -> PermissionTable {
        PermissionTable::new(
            "microloan.ledger.v1.LedgerService",
            &[("RunEndOfDay", &[Role::Operator])],
        )
    }

    fn bearer(token: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        headers
    }

    fn reason(status: &Status) -> String {
        use tonic_types::StatusExt;
        status
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default()
    }

    fn domain(status: &Status) -> String {
        use tonic_types::StatusExt;
        status
            .get_error_details()
            .error_info()
            .map(|info| info.domain.clone())
            .unwrap_or_default()
    }

    /// A remembered token is refused once expired (same leeway as jsonwebtoken), and
    /// a token with another signature is verified in full, never matched to it.
    #[test]
    fn remembered_tokens_expire_and_other_signatures_are_refused() {
        let keys = TokenKeys::from_secret(SECRET);
        let other = TokenKeys::from_secret(b"another-secret-another-secret-!!");
        let now = unix_now();
        let claims = Claims {
            sub: "alice".into(),
            role: Role::Operator,
            customer_id: None,
            iss: ISSUER.into(),
            iat: now,
            exp: now + 60,
        };
        let token = keys.sign(&claims).expect("sign");
        assert_eq!(keys.verify(&token).expect("valid").subject, "alice");
        assert_eq!(keys.verified.len(), 1, "remembered");
        // Still valid within the leeway, expired after it: the result jsonwebtoken
        // gives for the same token at that time.
        let exp = claims.exp;
        assert!(keys.verify_at(&token, exp + LEEWAY_SECONDS).is_ok());
        let expired = keys
            .verify_at(&token, exp + LEEWAY_SECONDS + 1)
            .expect_err("expired");
        assert_eq!(expired.reason, "TOKEN_EXPIRED");
        assert!(keys.verify_at(&token, now).is_ok(), "valid again at now");

        // The same claims signed with another secret, and the remembered token with
        // one signature character changed, are refused.
        let forged = other.sign(&claims).expect("sign");
        assert_eq!(
            keys.verify(&forged).expect_err("forged").reason,
            "TOKEN_BAD_SIGNATURE"
        );
        let (body, signature) = token.rsplit_once('.').expect("three parts");
        let mut changed: Vec<char> = signature.chars().collect();
        changed[5] = if changed[5] == 'A' { 'B' } else { 'A' };
        let tampered = format!("{body}.{}", changed.into_iter().collect::<String>());
        assert_eq!(
            keys.verify(&tampered).expect_err("tampered").reason,
            "TOKEN_BAD_SIGNATURE"
        );
        assert_eq!(keys.verified.len(), 1, "refusals are never remembered");
    }

    #[test]
    fn remembered_tokens_are_bounded_and_recently_used_ones_stay() {
        let tokens = VerifiedTokens::new(3);
        let caller = |name: &str| Caller {
            subject: name.into(),
            role: Role::Service,
            customer_id: None,
        };
        let now = unix_now();
        for name in ["a", "b", "c"] {
            tokens.insert(name, caller(name), now + 60);
        }
        // "d" starts a new generation; "a" is then used, so it moves back.
        tokens.insert("d", caller("d"), now + 60);
        assert_eq!(tokens.get("a", now), Some(Ok(caller("a"))));
        for name in ["e", "f", "g"] {
            tokens.insert(name, caller(name), now + 60);
        }
        assert!(tokens.len() <= 6, "at most two generations of 3");
        assert_eq!(tokens.get("b", now), None, "least recently used: gone");
        assert_eq!(tokens.get("g", now), Some(Ok(caller("g"))));
        for index in 0..100 {
            let name = format!("token-{index}");
            tokens.insert(&name, caller(&name), now + 60);
        }
        assert!(tokens.len() <= 6);
    }

    #[test]
    fn a_valid_token_with_an_allowed_role_passes() {
        let keys = TokenKeys::from_secret(SECRET);
        let token = keys
            .mint("alice", Role::Operator, None, Duration::from_secs(60))
            .expect("mint");
        let caller = authorize(&keys, &table(), PATH, &bearer(&token))
            .expect("authorized")
            .expect("caller");
        assert_eq!(caller.subject, "alice");
        assert_eq!(caller.role, Role::Operator);
    }

    #[test]
    fn refusals_carry_the_right_code_and_reason() {
        let keys = TokenKeys::from_secret(SECRET);
        let other = TokenKeys::from_secret(b"another-secret-another-secret-!!");
        let minute = Duration::from_secs(60);
        let customer = keys
            .mint("c1", Role::Customer, Some("c1"), minute)
            .expect("mint");
        let forged = other
            .mint("alice", Role::Operator, None, minute)
            .expect("mint");
        let expired = keys
            .sign(&Claims {
                sub: "alice".into(),
                role: Role::Operator,
                customer_id: None,
                iss: ISSUER.into(),
                iat: unix_now() - 600,
                exp: unix_now() - 300,
            })
            .expect("sign");
        let cases: [(http::HeaderMap, Code, &str); 6] = [
            (
                http::HeaderMap::new(),
                Code::Unauthenticated,
                "TOKEN_MISSING",
            ),
            (bearer("not.a.jwt"), Code::Unauthenticated, "TOKEN_INVALID"),
            (
                bearer(&forged),
                Code::Unauthenticated,
                "TOKEN_BAD_SIGNATURE",
            ),
            (bearer(&expired), Code::Unauthenticated, "TOKEN_EXPIRED"),
            (
                bearer(&customer),
                Code::PermissionDenied,
                "ROLE_NOT_ALLOWED",
            ),
            (
                bearer(&"x".repeat(10_000)),
                Code::Unauthenticated,
                "TOKEN_INVALID",
            ),
        ];
        for (headers, code, want_reason) in cases {
            let status = authorize(&keys, &table(), PATH, &headers).expect_err(want_reason);
            assert_eq!(status.code(), code, "{want_reason}");
            assert_eq!(reason(&status), want_reason);
            assert_eq!(domain(&status), "microloan.ledger", "{want_reason}");
        }
    }

    #[test]
    fn unlisted_methods_are_denied_and_open_paths_need_no_token() {
        let keys = TokenKeys::from_secret(SECRET);
        let token = keys
            .mint("alice", Role::Operator, None, Duration::from_secs(60))
            .expect("mint");
        let status = authorize(
            &keys,
            &table(),
            "/microloan.ledger.v1.LedgerService/NotInTheTable",
            &bearer(&token),
        )
        .expect_err("deny by default");
        assert_eq!(status.code(), Code::PermissionDenied);
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(
                authorize(&keys, &table(), path, &http::HeaderMap::new()).expect("open"),
                None
            );
        }
    }

    #[test]
    fn roles_lines_parse_without_their_qualifiers() {
        assert_eq!(
            parse_roles_line(
                "Returns one.\n\n Roles: customer (own only; IN_APP only), operator, service. review_resolution: operator only.\n Errors: NOT_FOUND."
            ),
            Ok(vec![Role::Customer, Role::Operator, Role::Service])
        );
        assert_eq!(
            parse_roles_line(
                " Roles: service, operator (operators may post only code MANUAL_ADJUSTMENT).\n"
            ),
            Ok(vec![Role::Operator, Role::Service])
        );
        assert!(parse_roles_line("no roles here").is_err());
        assert!(parse_roles_line(" Roles: admin.").is_err());
    }

    #[test]
    fn minting_checks_role_and_customer_id_and_ttl() {
        let keys = TokenKeys::from_secret(SECRET);
        let minute = Duration::from_secs(60);
        assert!(matches!(
            keys.mint("c", Role::Customer, None, minute),
            Err(MintError::CustomerIdMissing)
        ));
        assert!(matches!(
            keys.mint("ops", Role::Operator, Some("c"), minute),
            Err(MintError::CustomerIdUnexpected)
        ));
        assert!(matches!(
            keys.mint("ops", Role::Operator, None, Duration::ZERO),
            Err(MintError::TtlOutOfRange)
        ));
        assert!(matches!(
            keys.mint("ops", Role::Operator, None, TOKEN_TTL_MAX + minute),
            Err(MintError::TtlOutOfRange)
        ));
    }

    #[test]
    fn a_verify_only_secret_accepts_old_tokens_during_rotation() {
        let old = TokenKeys::from_secret(b"the-old-secret-the-old-secret-old");
        let old_token = old
            .mint("alice", Role::Operator, None, Duration::from_secs(60))
            .expect("mint");
        let new_only = TokenKeys::from_secret(SECRET);
        assert_eq!(
            new_only
                .verify(&old_token)
                .expect_err("old secret unknown")
                .reason,
            "TOKEN_BAD_SIGNATURE"
        );
        let rotating =
            TokenKeys::from_secret(SECRET).also_verifying(b"the-old-secret-the-old-secret-old");
        assert_eq!(
            rotating.verify(&old_token).expect("accepted").subject,
            "alice"
        );
        // New tokens are signed with the new secret only.
        let fresh = rotating
            .mint("bob", Role::Operator, None, Duration::from_secs(60))
            .expect("mint");
        assert_eq!(new_only.verify(&fresh).expect("new secret").subject, "bob");
    }

    #[test]
    fn customers_reach_only_their_own_data() {
        let own = uuid::Uuid::now_v7();
        let other = uuid::Uuid::now_v7();
        let customer = Caller {
            subject: own.to_string(),
            role: Role::Customer,
            customer_id: Some(own.to_string().to_uppercase()),
        };
        assert!(customer.may_access_customer(own));
        assert!(!customer.may_access_customer(other));
        let operator = Caller {
            subject: "ops".into(),
            role: Role::Operator,
            customer_id: None,
        };
        assert!(operator.may_access_customer(other));
        assert_eq!(operator.idempotency_scope(), "operator:ops");
    }
}
