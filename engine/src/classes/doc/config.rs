//! The `doc` class's settings, from its `[classes.doc]` table.

use super::{awareness, store};
use crate::config::{take_u64, ConfigError};

/// The class's settings.
#[derive(Debug, Clone)]
pub struct DocConfig {
    pub update_bytes_max: usize,
    pub doc_bytes_max: u64,
    pub awareness_state_bytes_max: usize,
    pub compact_log_entries: u64,
    pub compact_log_bytes: u64,
    pub doc_idle_ms: u64,
}

impl Default for DocConfig {
    fn default() -> Self {
        DocConfig {
            update_bytes_max: 1 << 20,
            doc_bytes_max: 16 << 20,
            awareness_state_bytes_max: awareness::STATE_BYTES_MAX_LIMIT,
            compact_log_entries: 500,
            compact_log_bytes: 1 << 20,
            doc_idle_ms: 30_000,
        }
    }
}

impl DocConfig {
    pub fn from_config(table: &mut toml::Table) -> Result<DocConfig, ConfigError> {
        let d = DocConfig::default();
        let config = DocConfig {
            update_bytes_max: take_u64(table, "doc", "update_bytes_max", d.update_bytes_max as u64)?
                as usize,
            doc_bytes_max: take_u64(table, "doc", "doc_bytes_max", d.doc_bytes_max)?,
            awareness_state_bytes_max: take_u64(
                table,
                "doc",
                "awareness_state_bytes_max",
                d.awareness_state_bytes_max as u64,
            )? as usize,
            compact_log_entries: take_u64(
                table,
                "doc",
                "compact_log_entries",
                d.compact_log_entries,
            )?,
            compact_log_bytes: take_u64(table, "doc", "compact_log_bytes", d.compact_log_bytes)?,
            doc_idle_ms: take_u64(table, "doc", "doc_idle_ms", d.doc_idle_ms)?,
        };
        if config.awareness_state_bytes_max > awareness::STATE_BYTES_MAX_LIMIT {
            return Err(ConfigError(format!(
                "classes.doc.awareness_state_bytes_max must be at most {}",
                awareness::STATE_BYTES_MAX_LIMIT
            )));
        }
        let update_limit = (store::CHUNK_BYTES * usize::from(u16::MAX)) as u64;
        if config.update_bytes_max as u64 > update_limit.min(config.doc_bytes_max) {
            return Err(ConfigError(
                "classes.doc.update_bytes_max must be at most doc_bytes_max".into(),
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DocConfig, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).expect("valid TOML");
        DocConfig::from_config(&mut table)
    }

    #[test]
    fn limits_are_read_and_impossible_ones_refused() {
        let config = parse("update_bytes_max = 100\ndoc_bytes_max = 1000\n").expect("valid");
        assert_eq!(config.update_bytes_max, 100);
        assert_eq!(config.doc_bytes_max, 1000);
        assert_eq!(config.compact_log_entries, 500);
        assert!(parse("awareness_state_bytes_max = 4001\n").is_err());
        assert!(parse("update_bytes_max = 2000\ndoc_bytes_max = 1000\n").is_err());
        assert!(parse("doc_idle_ms = 0\n").is_err());
    }
}
