//! Registration: a builder for the `ResourceProvider` object of docs/protocol/resource-provider.md §2 and the matching
//! PowerShell commands for operators (`New-MgmtSvcResourceProviderConfiguration`,
//! `Add-MgmtSvcResourceProviderConfiguration`).

use std::fmt::Write as _;

use wap_types::rp::{AuthenticationMode, Endpoint, ResourceProviderType, TenantEndpoint, TimeSpan};
use wap_types::{ResourceProvider, Secret, ServiceQuotaSetting};

use crate::auth::EndpointAuth;
use crate::tenant::{TemplateError, TenantUriMapping};

/// A registration is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The name must be letters and digits only (it is also the `services/<name>` segment).
    #[error("resource provider name {0:?} must be non-empty ASCII letters and digits")]
    InvalidName(String),
    /// A forwarding address is not an absolute `https` URL (or `http` when allowed) without credentials,
    /// query or fragment.
    #[error("{endpoint} forwarding address {address:?}: {reason}")]
    InvalidAddress {
        /// Which endpoint.
        endpoint: &'static str,
        /// The address.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// A tenant URI template is not valid.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// `MaxQuotaUpdateBatchSize` must be at least 1.
    #[error("MaxQuotaUpdateBatchSize must be at least 1, got {0}")]
    InvalidBatchSize(i64),
    /// An endpoint's Basic credentials are blank (empty user name, or empty or whitespace password).
    #[error("{endpoint}: the Basic credentials are blank (empty user name, or empty or whitespace password)")]
    BlankCredentials {
        /// Which endpoint.
        endpoint: &'static str,
    },
}

#[derive(Clone)]
struct EndpointSpec {
    address: String,
    auth: EndpointAuth,
}

impl std::fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("address", &redact_address(&self.address))
            .field("auth", &self.auth)
            .finish()
    }
}

/// `address` with a password in its user info replaced by `***` (parsed with the `url` crate); an address that
/// does not parse but contains `@` is shown as `<unparsable address>`, since its user info cannot be located.
fn redact_address(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => address.to_owned(),
        Err(_) if address.contains('@') => "<unparsable address>".to_owned(),
        Err(_) => address.to_owned(),
    }
}

#[derive(Debug, Clone)]
struct TenantSpec {
    endpoint: EndpointSpec,
    source: Option<String>,
    target: String,
}

/// Builds a [`Registration`].
///
/// ```
/// use wap_resource_provider::{EndpointAuth, RegistrationBuilder};
/// use wap_types::BasicCredentials;
///
/// let auth = EndpointAuth::basic(BasicCredentials::new("rpadmin", "R3source#Key"));
/// let registration = RegistrationBuilder::new("backup")
///     .display_name("Backup Vaults")
///     .notification_endpoint("https://rp.corp.test:30030/admin", &auth)
///     .usage_endpoint("https://rp.corp.test:30030/", &auth)
///     .tenant_endpoint("https://rp.corp.test:30030/", &auth, None, "subscriptions/{subid}/{*path}")
///     .build()
///     .unwrap();
/// let tenant = registration.resource_provider().tenant_endpoint.as_ref().unwrap();
/// assert_eq!(tenant.source_uri_template.as_deref(), Some("{subid}/services/backup/{*path}"));
/// assert!(registration.powershell_script().contains("New-MgmtSvcResourceProviderConfiguration"));
/// assert!(!registration.powershell_script().contains("R3source#Key"));
/// ```
#[derive(Debug, Clone)]
pub struct RegistrationBuilder {
    name: String,
    display_name: Option<String>,
    description: Option<String>,
    enabled: bool,
    pass_through_enabled: bool,
    allow_anonymous_access: bool,
    allow_multiple_instances: bool,
    admin: Option<EndpointSpec>,
    tenant: Option<TenantSpec>,
    usage: Option<EndpointSpec>,
    notification: Option<EndpointSpec>,
    instance_id: Option<String>,
    instance_display_name: Option<String>,
    max_quota_update_batch_size: Option<i64>,
    polling_interval: Option<TimeSpan>,
    provider_type: Option<ResourceProviderType>,
    settings: Vec<ServiceQuotaSetting>,
    allow_http: bool,
}

impl RegistrationBuilder {
    /// A registration for the provider `name` (letters and digits), enabled, with pass-through on.
    pub fn new(name: impl Into<String>) -> Self {
        RegistrationBuilder {
            name: name.into(),
            display_name: None,
            description: None,
            enabled: true,
            pass_through_enabled: true,
            allow_anonymous_access: false,
            allow_multiple_instances: false,
            admin: None,
            tenant: None,
            usage: None,
            notification: None,
            instance_id: None,
            instance_display_name: None,
            max_quota_update_batch_size: None,
            polling_interval: None,
            provider_type: None,
            settings: Vec::new(),
            allow_http: false,
        }
    }

    /// `DisplayName`.
    pub fn display_name(mut self, v: impl Into<String>) -> Self {
        self.display_name = Some(v.into());
        self
    }

    /// `Description`.
    pub fn description(mut self, v: impl Into<String>) -> Self {
        self.description = Some(v.into());
        self
    }

    /// `Enabled` (default `true`).
    pub fn enabled(mut self, v: bool) -> Self {
        self.enabled = v;
        self
    }

    /// `PassThroughEnabled`: admin/tenant proxying (default `true`).
    pub fn pass_through_enabled(mut self, v: bool) -> Self {
        self.pass_through_enabled = v;
        self
    }

    /// `AllowAnonymousAccess` (default `false`).
    pub fn allow_anonymous_access(mut self, v: bool) -> Self {
        self.allow_anonymous_access = v;
        self
    }

    /// `AllowMultipleInstances` (default `false`).
    pub fn allow_multiple_instances(mut self, v: bool) -> Self {
        self.allow_multiple_instances = v;
        self
    }

    /// `AdminEndpoint`: where `/services/<name>/<path>` admin requests are forwarded.
    pub fn admin_endpoint(mut self, address: impl Into<String>, auth: &EndpointAuth) -> Self {
        self.admin = Some(EndpointSpec { address: address.into(), auth: auth.clone() });
        self
    }

    /// `TenantEndpoint` with its templates. `source = None` registers the implicit
    /// `{subid}/services/<name>/{*path}` explicitly (the project always registers both templates).
    pub fn tenant_endpoint(
        mut self,
        address: impl Into<String>,
        auth: &EndpointAuth,
        source: Option<&str>,
        target: &str,
    ) -> Self {
        self.tenant = Some(TenantSpec {
            endpoint: EndpointSpec { address: address.into(), auth: auth.clone() },
            source: source.map(str::to_owned),
            target: target.to_owned(),
        });
        self
    }

    /// `UsageEndpoint`: where the collector calls `GET usage?lastID=&batchSize=`.
    pub fn usage_endpoint(mut self, address: impl Into<String>, auth: &EndpointAuth) -> Self {
        self.usage = Some(EndpointSpec { address: address.into(), auth: auth.clone() });
        self
    }

    /// `NotificationEndpoint`: subscriptions and quota.
    pub fn notification_endpoint(mut self, address: impl Into<String>, auth: &EndpointAuth) -> Self {
        self.notification = Some(EndpointSpec { address: address.into(), auth: auth.clone() });
        self
    }

    /// `InstanceId` (a GUID).
    pub fn instance_id(mut self, v: impl Into<String>) -> Self {
        self.instance_id = Some(v.into());
        self
    }

    /// `InstanceDisplayName`.
    pub fn instance_display_name(mut self, v: impl Into<String>) -> Self {
        self.instance_display_name = Some(v.into());
        self
    }

    /// `MaxQuotaUpdateBatchSize` (WAP's default is 5).
    pub fn max_quota_update_batch_size(mut self, v: i64) -> Self {
        self.max_quota_update_batch_size = Some(v);
        self
    }

    /// `SubscriptionStatusPollingInterval` (WAP's default is 10 s).
    pub fn subscription_status_polling_interval(mut self, v: std::time::Duration) -> Self {
        let secs = i64::try_from(v.as_secs()).unwrap_or(i64::MAX / 2);
        self.polling_interval = Some(TimeSpan::from_secs(secs));
        self
    }

    /// `Type`.
    pub fn provider_type(mut self, v: ResourceProviderType) -> Self {
        self.provider_type = Some(v);
        self
    }

    /// Adds a `Settings` entry.
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push(ServiceQuotaSetting::new(key.into(), value.into()));
        self
    }

    /// Accepts `http://` forwarding addresses (tests and local simulators; WAP requires HTTPS in production).
    pub fn allow_http(mut self, v: bool) -> Self {
        self.allow_http = v;
        self
    }

    /// Checks everything and builds the registration.
    pub fn build(self) -> Result<Registration, RegistrationError> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(RegistrationError::InvalidName(self.name));
        }
        if let Some(n) = self.max_quota_update_batch_size.filter(|n| *n < 1) {
            return Err(RegistrationError::InvalidBatchSize(n));
        }
        let endpoint =
            |which: &'static str, spec: &Option<EndpointSpec>| -> Result<Option<Endpoint>, RegistrationError> {
                spec.as_ref()
                    .map(|s| {
                        check_address(which, &s.address, self.allow_http)?;
                        if s.auth.has_blank_credentials() {
                            return Err(RegistrationError::BlankCredentials { endpoint: which });
                        }
                        Ok(to_endpoint(s))
                    })
                    .transpose()
            };
        let admin_endpoint = endpoint("AdminEndpoint", &self.admin)?;
        let usage_endpoint = endpoint("UsageEndpoint", &self.usage)?;
        let notification_endpoint = endpoint("NotificationEndpoint", &self.notification)?;
        let tenant_endpoint = match &self.tenant {
            None => None,
            Some(t) => {
                check_address("TenantEndpoint", &t.endpoint.address, self.allow_http)?;
                if t.endpoint.auth.has_blank_credentials() {
                    return Err(RegistrationError::BlankCredentials { endpoint: "TenantEndpoint" });
                }
                let mapping = TenantUriMapping::new(&self.name, &t.endpoint.address, t.source.as_deref(), &t.target)?;
                let e = to_endpoint(&t.endpoint);
                Some(TenantEndpoint {
                    forwarding_address: e.forwarding_address,
                    authentication_mode: e.authentication_mode,
                    authentication_username: e.authentication_username,
                    authentication_password: e.authentication_password,
                    source_uri_template: Some(mapping.source().as_str().to_owned()),
                    target_uri_template: Some(mapping.target().as_str().to_owned()),
                    ..Default::default()
                })
            }
        };
        let rp = ResourceProvider {
            name: self.name,
            display_name: self.display_name,
            description: self.description,
            enabled: self.enabled,
            pass_through_enabled: self.pass_through_enabled,
            allow_anonymous_access: self.allow_anonymous_access,
            allow_multiple_instances: self.allow_multiple_instances,
            admin_endpoint,
            tenant_endpoint,
            usage_endpoint,
            health_check_endpoint: None,
            notification_endpoint,
            instance_id: self.instance_id,
            instance_display_name: self.instance_display_name,
            max_quota_update_batch_size: self.max_quota_update_batch_size,
            subscription_status_polling_interval: self.polling_interval,
            provider_type: self.provider_type,
            settings: (!self.settings.is_empty()).then_some(self.settings),
            ..Default::default()
        };
        Ok(Registration { rp })
    }
}

fn to_endpoint(spec: &EndpointSpec) -> Endpoint {
    let creds = spec.auth.basic_credentials();
    Endpoint {
        forwarding_address: spec.address.clone(),
        authentication_mode: spec.auth.mode(),
        authentication_username: creds.map(|c| c.username.clone()),
        authentication_password: creds.map(|c| c.password.clone()),
        ..Default::default()
    }
}

fn check_address(endpoint: &'static str, address: &str, allow_http: bool) -> Result<(), RegistrationError> {
    let fail = |reason: &str| RegistrationError::InvalidAddress {
        endpoint,
        // The error is shown to operators and logged: never with a password from the URL.
        address: redact_address(address),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(address).map_err(|e| fail(&format!("not an absolute URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(fail("WAP requires HTTPS (use allow_http for local tests)")),
        _ => return Err(fail("scheme must be https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fail("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("credentials belong in the endpoint's authentication, not the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail("no query string or fragment allowed"));
    }
    Ok(())
}

/// A checked registration: the `ResourceProvider` JSON for the Admin API and the PowerShell for operators.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    rp: ResourceProvider,
}

impl Registration {
    /// The registration object.
    pub fn resource_provider(&self) -> &ResourceProvider {
        &self.rp
    }

    /// The body of `POST https://<admin>:30004/resourceproviders`, passwords included (send it, do not log it).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.rp).unwrap_or_default()
    }

    /// The same JSON with every password replaced by `"***"` (for logs and review).
    pub fn to_redacted_json(&self) -> String {
        let mut rp = self.rp.clone();
        let redact = |p: &mut Option<Secret>| {
            if p.is_some() {
                *p = Some(Secret::new("***"));
            }
        };
        for e in [&mut rp.admin_endpoint, &mut rp.usage_endpoint, &mut rp.notification_endpoint].into_iter().flatten() {
            redact(&mut e.authentication_password);
        }
        if let Some(t) = &mut rp.tenant_endpoint {
            redact(&mut t.authentication_password);
        }
        serde_json::to_string_pretty(&rp).unwrap_or_default()
    }

    /// PowerShell for an operator on the Admin API machine: `New-MgmtSvcResourceProviderConfiguration` with
    /// every endpoint, the properties the cmdlet has no parameter for, then
    /// `Add-MgmtSvcResourceProviderConfiguration`. Passwords are placeholders (`$…Password` variables set to
    /// `'<…>'` at the top); nothing secret is written.
    pub fn powershell_script(&self) -> String {
        let rp = &self.rp;
        let mut s = String::new();
        let _ = writeln!(s, "# Registers the resource provider '{}' with Windows Azure Pack.", ps_escape(&rp.name));
        let _ = writeln!(s, "# Run on the Admin API machine (module MgmtSvcConfig). Replace every <...> placeholder.");
        let _ = writeln!(s, "Import-Module -Name 'MgmtSvcConfig'");
        let endpoints: [(&str, Option<EndpointView<'_>>); 4] = [
            ("Admin", rp.admin_endpoint.as_ref().map(endpoint_parts)),
            (
                "Tenant",
                rp.tenant_endpoint.as_ref().map(|t| {
                    (t.forwarding_address.as_str(), t.authentication_mode, t.authentication_username.as_deref())
                }),
            ),
            ("Usage", rp.usage_endpoint.as_ref().map(endpoint_parts)),
            ("Notification", rp.notification_endpoint.as_ref().map(endpoint_parts)),
        ];
        for (prefix, e) in &endpoints {
            if let Some((_, AuthenticationMode::Basic, _)) = e {
                let _ = writeln!(
                    s,
                    "${}Password = '<password of the {} endpoint>'",
                    prefix.to_ascii_lowercase(),
                    prefix.to_ascii_lowercase()
                );
            }
        }
        let mut args: Vec<String> = vec![format!("-Name '{}'", ps_escape(&rp.name))];
        if let Some(v) = &rp.instance_id {
            args.push(format!("-InstanceId '{}'", ps_escape(v)));
        }
        if let Some(v) = &rp.display_name {
            args.push(format!("-DisplayName '{}'", ps_escape(v)));
        }
        if let Some(v) = &rp.instance_display_name {
            args.push(format!("-InstanceDisplayName '{}'", ps_escape(v)));
        }
        if let Some(t) = rp.provider_type.filter(|t| t.is_known()) {
            args.push(format!("-Type {t}"));
        }
        if rp.allow_anonymous_access {
            args.push("-AllowAnonymousAccess".into());
        }
        if rp.allow_multiple_instances {
            args.push("-AllowMultipleInstances".into());
        }
        for (prefix, e) in &endpoints {
            let Some((address, mode, user)) = e else { continue };
            args.push(format!("-{prefix}ForwardingAddress '{}'", ps_escape(address)));
            args.push(format!("-{prefix}AuthenticationMode {}", mode_name(*mode)));
            if *mode == AuthenticationMode::Basic {
                if let Some(u) = user {
                    args.push(format!("-{prefix}AuthenticationUserName '{}'", ps_escape(u)));
                }
                args.push(format!("-{prefix}AuthenticationPassword ${}Password", prefix.to_ascii_lowercase()));
            }
            if *prefix == "Tenant" {
                if let Some(t) = &rp.tenant_endpoint {
                    if let Some(src) = &t.source_uri_template {
                        args.push(format!("-TenantSourceUriTemplate '{}'", ps_escape(src)));
                    }
                    if let Some(tgt) = &t.target_uri_template {
                        args.push(format!("-TenantTargetUriTemplate '{}'", ps_escape(tgt)));
                    }
                }
            }
        }
        let _ = writeln!(s, "$rp = New-MgmtSvcResourceProviderConfiguration `");
        for (i, a) in args.iter().enumerate() {
            let tail = if i + 1 < args.len() { " `" } else { "" };
            let _ = writeln!(s, "    {a}{tail}");
        }
        let _ = writeln!(s, "$rp.Enabled = ${}", rp.enabled);
        let _ = writeln!(s, "$rp.PassThroughEnabled = ${}", rp.pass_through_enabled);
        if let Some(n) = rp.max_quota_update_batch_size {
            let _ = writeln!(s, "$rp.MaxQuotaUpdateBatchSize = {n}");
        }
        if let Some(p) = rp.subscription_status_polling_interval {
            let _ = writeln!(s, "$rp.SubscriptionStatusPollingInterval = [TimeSpan]::Parse('{p}')");
        }
        for setting in rp.settings.iter().flatten() {
            let _ = writeln!(
                s,
                "# Setting {} = '{}': the cmdlet has no parameter for Settings; send them with the Admin API JSON.",
                setting.key,
                ps_escape(&setting.value)
            );
        }
        let _ = writeln!(s, "Add-MgmtSvcResourceProviderConfiguration -ResourceProvider $rp");
        let _ = writeln!(s, "Get-MgmtSvcResourceProviderConfiguration -Name '{}'", ps_escape(&rp.name));
        s
    }
}

/// Forwarding address, mode and user name of an endpoint.
type EndpointView<'a> = (&'a str, AuthenticationMode, Option<&'a str>);

fn endpoint_parts(e: &Endpoint) -> EndpointView<'_> {
    (e.forwarding_address.as_str(), e.authentication_mode, e.authentication_username.as_deref())
}

fn mode_name(mode: AuthenticationMode) -> String {
    match mode {
        AuthenticationMode::None => "None".into(),
        AuthenticationMode::Basic => "Basic".into(),
        AuthenticationMode::Windows => "Windows".into(),
        AuthenticationMode::Unknown(n) => n.to_string(),
    }
}

/// Escapes a value for a single-quoted PowerShell string.
fn ps_escape(v: &str) -> String {
    v.replace('\'', "''")
}
