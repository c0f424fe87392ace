//! The checks `load` runs before anything starts: settings that would break the lease invariants,
//! leave a secret public or make a node unreachable are refused.

use anyhow::bail;
use jsonwebtoken::Algorithm;

use super::loading::{is_development, private_enough};
use super::{AuthMode, AuthSettings, NodeSettings, RedisMode, RedisSettings, Settings};

impl AuthSettings {
    /// `loopback`: the server listens on loopback only, so nobody else can reach it.
    pub(super) fn validate(&self, profile: &str, loopback: bool) -> anyhow::Result<()> {
        if self.mode == AuthMode::Off {
            if profile != "local" {
                bail!("auth.mode = \"off\" is accepted only in the local profile, not {profile}");
            }
            if !loopback {
                bail!("auth.mode = \"off\" is accepted only on a loopback server.host");
            }
            return Ok(());
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            bail!("auth.issuer and auth.audience must be set");
        }
        let most = self
            .rider_max_ttl_secs
            .min(self.driver_max_ttl_secs)
            .min(self.ops_max_ttl_secs);
        if most == 0 || self.token_ttl_secs == 0 {
            bail!("auth.token_ttl_secs and auth.*_max_ttl_secs must be positive");
        }
        let secondary = self.secondary_secret.expose();
        if !secondary.is_empty() && !is_development(profile) && !private_enough(secondary) {
            bail!(
                "auth.secondary_secret must be a private value of at least 32 characters \
                 outside the local and test profiles (profile {profile})"
            );
        }
        // A token signed with the secondary secret is accepted like one signed with the first.
        if secondary.starts_with("dev-") && !loopback {
            bail!(
                "auth.secondary_secret is a development value; set a private one \
                 (RIDELOCK_AUTH__SECONDARY_SECRET) or none to listen on a non-loopback address"
            );
        }
        // A scrape token opens only /metrics, but a short or shared one would still let anyone
        // read every node's figures: the same rule as a secret, in every profile.
        let scrape = self.scrape_token.expose();
        if !scrape.is_empty() && !private_enough(scrape) {
            bail!("auth.scrape_token must be a private value of at least 32 characters, or empty");
        }
        match self.algorithm()? {
            Algorithm::HS256 => {
                let secret = self.secret.expose();
                if secret.is_empty() {
                    bail!("auth.secret must be set for HS256 (RIDELOCK_AUTH__SECRET)");
                }
                if !is_development(profile) && !private_enough(secret) {
                    bail!(
                        "auth.secret must be a private value of at least 32 characters \
                         outside the local and test profiles (profile {profile})"
                    );
                }
                // The development secrets are in this repository: anyone could mint ops tokens.
                if secret.starts_with("dev-") && !loopback {
                    bail!(
                        "auth.secret is a development value; set a private one \
                         (RIDELOCK_AUTH__SECRET) to listen on a non-loopback address"
                    );
                }
            }
            _ => {
                if self.public_key_path.is_empty() {
                    bail!("auth.public_key_path must be set for RS256 (RIDELOCK_AUTH__PUBLIC_KEY_PATH)");
                }
            }
        }
        Ok(())
    }
}

impl Settings {
    /// Fails on settings that would make the service unsafe or unusable.
    pub(crate) fn validate(&self, profile: &str) -> anyhow::Result<()> {
        if self.node.id.is_empty() {
            bail!("node.id must be set (RIDELOCK_NODE__ID) in the {profile} profile");
        }
        if self.node.id.contains(':') || self.node.id.contains(char::is_whitespace) {
            bail!("node.id must not contain ':' or whitespace");
        }
        let secret = self.cluster.secret.expose();
        if secret.is_empty() {
            bail!("cluster.secret must be set (RIDELOCK_CLUSTER__SECRET)");
        }
        if !is_development(profile) && !private_enough(secret) {
            bail!(
                "cluster.secret must be a private value of at least 32 characters \
                 outside the local and test profiles (profile {profile})"
            );
        }
        // The development secrets are public (they are in this repository): fine for nodes that
        // only listen on loopback, never for one other machines can reach.
        let loopback = matches!(self.server.host.as_str(), "127.0.0.1" | "::1" | "localhost");
        if secret.starts_with("dev-") && !loopback {
            bail!(
                "cluster.secret is a development value; set a private one \
                 (RIDELOCK_CLUSTER__SECRET) to listen on {}",
                self.server.host
            );
        }
        self.node.check_advertise_url(&self.server.host, loopback)?;
        if self.database.url.expose().is_empty() || self.redis.url.expose().is_empty() {
            bail!("database.url and redis.url must be set (DATABASE_URL, REDIS_URL)");
        }
        self.redis.check_nodes()?;
        if self.lease.renew_every_ms == 0 || self.lease.renew_every_ms * 3 > self.lease.ttl_ms {
            bail!("lease.renew_every_ms must be positive and at most lease.ttl_ms / 3");
        }
        if self.lease.drift_ms >= self.lease.ttl_ms / 3 {
            bail!("lease.drift_ms must be below lease.ttl_ms / 3");
        }
        // WAIT holds the connection's later commands behind it: it must end well within the
        // response timeout, or one slow replica would make Redis look silent.
        if self.lease.wait_replicas > 0
            && (self.lease.wait_timeout_ms == 0
                || self.lease.wait_timeout_ms * 2 > self.redis.response_timeout_ms)
        {
            bail!(
                "lease.wait_timeout_ms must be positive and at most half of redis.response_timeout_ms"
            );
        }
        if self.redis.response_timeout_ms == 0
            || self.redis.response_timeout_ms >= self.lease.renew_every_ms
        {
            bail!("redis.response_timeout_ms must be positive and below lease.renew_every_ms");
        }
        if self.server.request_timeout_ms == 0 {
            bail!("server.request_timeout_ms must be positive");
        }
        if self.database.idle_transaction_timeout_ms <= self.server.request_timeout_ms + 1000 {
            bail!(
                "database.idle_transaction_timeout_ms must be above server.request_timeout_ms + 1000 \
                 (a live request's transaction must never be ended under it)"
            );
        }
        if self.database.statement_timeout_ms == 0
            || self.database.statement_timeout_ms > self.server.request_timeout_ms
        {
            bail!(
                "database.statement_timeout_ms must be positive and at most \
                 server.request_timeout_ms (a statement must end within its request)"
            );
        }
        if self.database.pool_size == 0 || self.booking.mailbox_capacity == 0 {
            bail!("database.pool_size and booking.mailbox_capacity must be positive");
        }
        if !(self.assign.radius_km > 0.0 && self.assign.radius_km <= 500.0) {
            bail!("assign.radius_km must be in (0, 500]");
        }
        if self.booking.max_active_per_rider == 0 {
            bail!("booking.max_active_per_rider must be positive");
        }
        if !(self.booking.max_fare_ratio >= 1.0 && self.booking.max_fare_ratio <= 100.0) {
            bail!("booking.max_fare_ratio must be between 1 and 100");
        }
        if self.assign.max_candidates == 0 {
            bail!("assign.max_candidates must be positive");
        }
        let rates = &self.rate_limit;
        let positive = |rate: f64| rate.is_finite() && rate > 0.0;
        if !(positive(rates.per_second)
            && positive(rates.ops_per_second)
            && positive(rates.address_per_second))
            || rates.burst == 0
            || rates.ops_burst == 0
            || rates.address_burst == 0
            || rates.max_callers == 0
        {
            bail!("rate_limit: every rate, burst and max_callers must be positive");
        }
        let offer = &self.offer;
        if offer.timeout_ms == 0
            || offer.max_offers == 0
            || offer.sweep_every_ms == 0
            || offer.sweep_batch == 0
        {
            bail!("offer.timeout_ms, max_offers, sweep_every_ms and sweep_batch must be positive");
        }
        let idempotency = &self.idempotency;
        // A key must outlive every retry of its request: the client's, and a forwarded copy's.
        if idempotency.retention_secs * 1000 <= self.server.request_timeout_ms * 2 {
            bail!("idempotency.retention_secs must be well above server.request_timeout_ms");
        }
        let streams = &self.streams;
        if streams.heartbeat_ms == 0 || streams.buffer == 0 {
            bail!("streams.heartbeat_ms and streams.buffer must be positive");
        }
        // A writer's transaction runs a few statements, each cut off at the statement timeout.
        if streams.replay_overlap_ms < self.database.statement_timeout_ms * 2 {
            bail!("streams.replay_overlap_ms must be at least twice database.statement_timeout_ms");
        }
        if idempotency.purge_every_ms == 0 || idempotency.purge_batch == 0 {
            bail!("idempotency.purge_every_ms and idempotency.purge_batch must be positive");
        }
        self.auth.validate(profile, loopback)
    }
}

impl RedisSettings {
    /// Sentinel and cluster modes need their nodes, each a redis:// URL; `single` needs none.
    pub(super) fn check_nodes(&self) -> anyhow::Result<()> {
        let urls = self.node_urls();
        match self.mode {
            RedisMode::Single => Ok(()),
            _ if urls.is_empty() => bail!(
                "redis.nodes must list the {} (RIDELOCK_REDIS__NODES) in redis.mode {:?}",
                match self.mode {
                    RedisMode::Sentinel => "sentinels",
                    _ => "cluster's nodes",
                },
                self.mode
            ),
            _ if urls.iter().any(|url| !url.starts_with("redis://")) => {
                bail!("redis.nodes must be redis:// URLs, separated by commas")
            }
            RedisMode::Sentinel if self.service_name.trim().is_empty() => {
                bail!("redis.service_name must name the primary the sentinels monitor")
            }
            _ => Ok(()),
        }
    }
}

impl NodeSettings {
    /// Other nodes forward requests to `node.advertise_url`. Its default,
    /// `http://127.0.0.1:<port>`, reaches this node only from its own machine: a node listening
    /// on another address (so serving other machines) must name a URL they can reach, or every
    /// other node would forward this node's bookings to itself.
    pub(super) fn check_advertise_url(&self, host: &str, loopback: bool) -> anyhow::Result<()> {
        let url = self.advertise_url.trim();
        if url.is_empty() {
            if loopback {
                return Ok(());
            }
            bail!(
                "node.advertise_url must be set (RIDELOCK_NODE__ADVERTISE_URL) to the URL other \
                 nodes reach this one at, e.g. http://10.0.0.5:3000: it listens on {host}, and \
                 the default http://127.0.0.1:<port> reaches only its own machine"
            );
        }
        if url.starts_with("https://") {
            bail!(
                "node.advertise_url {url}: nodes call each other over plain HTTP (the calls are \
                 signed); to encrypt between hosts use a service mesh or a VPN and advertise the \
                 http:// address (docs/security.md)"
            );
        }
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or_default())
            .unwrap_or_default();
        let host_part = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        if host_part.is_empty() {
            bail!("node.advertise_url must be an http:// URL with a host, not {url}");
        }
        if matches!(host_part, "0.0.0.0" | "::") {
            bail!("node.advertise_url {url} names no machine: give an address other nodes reach");
        }
        let loopback_url =
            host_part == "localhost" || host_part == "::1" || host_part.starts_with("127.");
        if loopback_url && !loopback {
            bail!(
                "node.advertise_url {url} reaches only this machine, but the node listens on \
                 {host} to serve others: give an address other nodes reach"
            );
        }
        Ok(())
    }
}
