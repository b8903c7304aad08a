//! What a metrics scrape reads of a running container.

use berth_isolator::IsolatorError;
use serde_json::{Map, Value};

use super::Manager;
use crate::container::ContainerView as Container;

impl Manager {
    /// Each isolator's scrape figures ([`berth_isolator::Isolator::scrape`])
    /// of a running `container`, keyed by isolator (as [`Manager::stats`]),
    /// without the ones that fail (logged): one isolator's error does not
    /// hide the others.
    pub fn scrape_usage(&self, container: &Container) -> Map<String, Value> {
        let mut out = Map::new();
        for isolator in self.isolators.select(&container.isolation) {
            match isolator.scrape(&container.id) {
                Ok(usage) => {
                    out.insert(isolator.name().to_string(), Value::Object(usage));
                }
                // Ended between the list and this read: normal.
                Err(e @ IsolatorError::UnknownContainer { .. }) => {
                    tracing::debug!(id = %container.id, isolator = isolator.name(), "metrics: {e}")
                }
                Err(e) => {
                    tracing::warn!(id = %container.id, isolator = isolator.name(), "metrics: {e}")
                }
            }
        }
        out
    }
}
