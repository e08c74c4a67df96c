//! The classes a server serves, shared read-only by every shard.

use std::sync::Arc;

use crate::config::{ClassCommon, Config, ConfigError};
use crate::object::ObjectClass;

/// Longest class name; class names appear in every object's ID.
pub const CLASS_NAME_BYTES_MAX: usize = 64;

/// Builds a class from the class's table in the config file. The factory
/// removes the keys it understands; any left over are refused.
pub type ClassFactory =
    Box<dyn Fn(&mut toml::Table) -> Result<Arc<dyn ObjectClass>, ConfigError> + Send + Sync>;

/// One registered class.
pub struct ClassEntry {
    pub name: String,
    pub class: Arc<dyn ObjectClass>,
    pub common: ClassCommon,
}

/// Every class of a server, by index.
pub struct Registry {
    entries: Vec<ClassEntry>,
}

impl Registry {
    /// Builds every class from `config`. A `[classes.X]` table for a class
    /// that is not registered is refused.
    pub fn build(
        factories: &[(String, ClassFactory)],
        config: &Config,
    ) -> Result<Registry, ConfigError> {
        if let Some(unknown) = config
            .classes
            .keys()
            .find(|k| !factories.iter().any(|(n, _)| n == *k))
        {
            return Err(ConfigError(format!(
                "classes.{unknown}: no such class is registered"
            )));
        }
        let mut entries = Vec::with_capacity(factories.len());
        for (name, factory) in factories {
            let (common, mut table) = config.class_settings(name)?;
            let class = factory(&mut table)?;
            crate::config::reject_unknown(&table, name)?;
            entries.push(ClassEntry {
                name: name.clone(),
                class,
                common,
            });
        }
        Ok(Registry { entries })
    }

    /// The class named `name`, with its index.
    pub fn find(&self, name: &str) -> Option<(u16, &ClassEntry)> {
        self.entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == name)
            .map(|(i, e)| (i as u16, e))
    }

    /// The class at `index`.
    pub fn get(&self, index: u16) -> &ClassEntry {
        &self.entries[usize::from(index)]
    }
}

/// Checks a class name: 1 to 64 bytes of lowercase letters, digits, `-` and
/// `_`, so that it is one path segment and never needs decoding.
pub fn valid_class_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= CLASS_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A configured route, its class resolved.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub path: String,
    pub class: u16,
    pub class_name: String,
    pub name_param: String,
    pub name_default: String,
}

/// Resolves the configuration's routes against the registered classes. A
/// configured route to a class that is not registered is refused; the
/// default routes are dropped when their class (`chat`) is not registered.
pub fn resolve_routes(
    config: &Config,
    registry: &Registry,
) -> Result<Vec<RouteEntry>, ConfigError> {
    let mut resolved = Vec::new();
    for route in config.routes() {
        let Some((class, _)) = registry.find(&route.class) else {
            if config.routes.is_none() {
                continue;
            }
            return Err(ConfigError(format!(
                "routes: `{}` names class `{}`, which is not registered",
                route.path, route.class
            )));
        };
        if resolved.iter().any(|r: &RouteEntry| r.path == route.path) {
            return Err(ConfigError(format!(
                "routes: `{}` is listed twice",
                route.path
            )));
        }
        resolved.push(RouteEntry {
            path: route.path,
            class,
            class_name: route.class,
            name_param: route.name_param,
            name_default: route.name_default,
        });
    }
    Ok(resolved)
}
