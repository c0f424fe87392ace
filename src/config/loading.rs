//! Where settings come from: the profile, the built-in and on-disk files, the environment.

use anyhow::{bail, Context};

use super::Settings;

/// The profile named by `RIDELOCK_ENV`. Unset means `production`: a deployment that names no
/// profile gets the strict rules, never the local profile's open doors (`make run`, `make
/// cluster` and the scripts name `local` or `test` themselves).
pub fn profile() -> String {
    std::env::var("RIDELOCK_ENV").unwrap_or_else(|_| "production".to_owned())
}

/// The profiles whose public development secrets and (local only) `auth.mode = "off"` are
/// accepted. Every other profile, named or not, must bring private secrets.
pub(crate) fn is_development(profile: &str) -> bool {
    matches!(profile, "local" | "test")
}

/// A secret fit for a profile that is not a development one: 32+ characters, and not one of
/// this repository's public `dev-…` values.
pub(super) fn private_enough(secret: &str) -> bool {
    secret.len() >= 32 && !secret.starts_with("dev-")
}

/// The configuration files built into the binary: `config/base.toml` and one file per profile.
/// A binary copied anywhere runs with these; files on disk only override them.
const BUILT_IN: &[(&str, &str)] = &[
    ("base", include_str!("../../config/base.toml")),
    ("local", include_str!("../../config/local.toml")),
    ("test", include_str!("../../config/test.toml")),
    ("production", include_str!("../../config/production.toml")),
];

/// Reads the layered configuration: the built-in `base` and profile files, then the same files
/// from `RIDELOCK_CONFIG_DIR` (which must exist when set) or from `config/` under the current
/// directory (when there is one), then `RIDELOCK_*` environment variables.
pub fn load() -> anyhow::Result<Settings> {
    let loaded = load_profile(&profile());
    if std::env::var_os("RIDELOCK_ENV").is_none() {
        return loaded.context(
            "RIDELOCK_ENV is not set, so the production profile's rules apply; \
             set RIDELOCK_ENV=local to develop (make run does)",
        );
    }
    loaded
}

/// [`load`] for a named profile, whatever `RIDELOCK_ENV` says.
pub fn load_profile(profile: &str) -> anyhow::Result<Settings> {
    let dir = match std::env::var("RIDELOCK_CONFIG_DIR") {
        Ok(dir) if std::path::Path::new(&dir).is_dir() => dir,
        Ok(dir) => bail!("RIDELOCK_CONFIG_DIR={dir} is not a directory"),
        Err(_) => "config".to_owned(),
    };
    let mut builder = config::Config::builder();
    for name in ["base", profile] {
        if let Some((_, text)) = BUILT_IN.iter().find(|(built_in, _)| *built_in == name) {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        builder =
            builder.add_source(config::File::with_name(&format!("{dir}/{name}")).required(false));
    }
    let mut builder = builder.add_source(
        config::Environment::with_prefix("RIDELOCK")
            .prefix_separator("_")
            .separator("__"),
    );
    if let Ok(url) = std::env::var("DATABASE_URL") {
        builder = builder.set_override("database.url", url)?;
    }
    if let Ok(url) = std::env::var("REDIS_URL") {
        builder = builder.set_override("redis.url", url)?;
    }
    let mut settings: Settings = builder
        .build()?
        .try_deserialize()
        .with_context(|| format!("reading configuration from {dir} (profile {profile})"))?;
    if settings.node.id.is_empty() && is_development(profile) {
        settings.node.id = default_node_id(settings.server.port);
    }
    settings.validate(profile)?;
    Ok(settings)
}

fn default_node_id(port: u16) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".to_owned());
    format!("{host}-{port}")
}
