//! The resource contract is open: an isolator defined here, outside
//! `isolators/` and knowing nothing of berth but the isolator API crate,
//! brings its own resource section (`{"example": {"tokens": 3}}`), its own
//! validation, merge, config table and usage keys, and works end to end
//! through the API — registered the way any isolator not built in is
//! (`berth::agent::register_isolator`), with no change to the API crate,
//! the agent, the config or the CLI.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{Agent, EMBEDDED_AGENT_ARGS};
use serde_json::{json, Value};

/// The test isolator: a budget of "tokens" per container.
mod example {
    use berth_isolator::{
        ContainerConfig, ContainerId, ContainerStates, Contribution, Isolator, IsolatorError,
        RecoveredContainer, ResourceSection, Resources, Usage,
    };
    use serde::Deserialize;

    /// Its section of a container's resources: `{"example": {"tokens": 3}}`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tokens {
        pub tokens: Option<u32>,
    }

    /// Its config table, `[isolators.example]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        pub max_tokens: u32,
    }

    pub struct Example {
        pub settings: Settings,
        pub containers: ContainerStates<u32>,
    }

    impl Example {
        fn tokens(&self, resources: &Resources) -> Result<u32, IsolatorError> {
            let tokens = resources.section::<Tokens>("example")?.tokens.unwrap_or(1);
            if tokens > self.settings.max_tokens {
                return Err(IsolatorError::invalid(
                    "resources.example.tokens",
                    format!("at most {}, got {tokens}", self.settings.max_tokens),
                ));
            }
            Ok(tokens)
        }
    }

    impl Isolator for Example {
        fn name(&self) -> &str {
            "example"
        }

        fn resource_section(&self) -> Option<ResourceSection> {
            Some(ResourceSection::new("example"))
        }

        fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
            self.tokens(&config.resources).map(drop)
        }

        fn recover(
            &self,
            containers: &[RecoveredContainer],
            orphans: &[ContainerId],
        ) -> Result<(), IsolatorError> {
            self.containers
                .recover(containers, orphans, |c| self.tokens(&c.config.resources))
        }

        fn prepare(
            &self,
            id: &ContainerId,
            config: &ContainerConfig,
        ) -> Result<Contribution, IsolatorError> {
            let tokens = self.tokens(&config.resources)?;
            self.containers.insert(id.clone(), tokens);
            let mut contribution = Contribution::default();
            contribution
                .env
                .insert("EXAMPLE_TOKENS".into(), tokens.to_string());
            Ok(contribution)
        }

        fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
            let tokens = self.tokens(resources)?;
            self.containers.with(id, |t| *t = tokens)
        }

        fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
            let tokens = self.containers.get(id)?;
            let mut usage = Usage::new();
            usage.insert("tokens".into(), tokens.into());
            usage.insert("max_tokens".into(), self.settings.max_tokens.into());
            Ok(usage)
        }

        fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
            self.containers.remove(id);
            Ok(())
        }
    }
}

/// Not a test by itself: the agent process of [`Agent::start_embedded`],
/// this test binary run again with the agent's arguments in the
/// environment. Without them it does nothing.
#[test]
fn embedded_agent() {
    let Ok(args) = std::env::var(EMBEDDED_AGENT_ARGS) else {
        return;
    };
    berth::agent::register_isolator("example", |_config, table| {
        let table = table.ok_or_else(|| anyhow::anyhow!("[isolators.example] is missing"))?;
        let settings: example::Settings = table.clone().try_into()?;
        Ok(Arc::new(example::Example {
            settings,
            containers: Default::default(),
        }))
    });
    let args: Vec<&str> = args.lines().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .map(|i| args[i + 1].to_string())
    };
    let mut config =
        berth::config::AgentConfig::load(&PathBuf::from(flag("--config").unwrap())).unwrap();
    config.socket = flag("--socket").unwrap().into();
    config.work_dir = flag("--work-dir").unwrap().into();
    config.runtime_dir = flag("--runtime-dir").unwrap().into();
    config.cgroup_root = flag("--cgroup-root").unwrap();
    config.shim = Some(flag("--shim").unwrap().into());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(berth::agent::run(config))
        .unwrap();
}

fn message(answer: &common::Answer) -> String {
    answer.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_isolator_from_outside_the_tree_brings_its_own_resource_section() {
    require_root!();
    let agent = Agent::start_embedded("embedded_agent", "[isolators.example]\nmax_tokens = 10\n");
    // `GET /v1/info` lists its section beside the built-ins'.
    let info = agent.api("GET", "/v1/info", None).body;
    let sections: Vec<&Value> = info["isolators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["resources"])
        .collect();
    assert!(sections.contains(&&json!({"section": "example", "flat_keys": []})));
    assert!(sections.contains(&&json!({"section": "cpu", "flat_keys": ["cpus"]})));

    // Launch with the section (and a built-in's flat key beside it): the
    // isolator's prepare sees the value and hands it to the container.
    agent.launch(json!({
        "id": "c1",
        "command": ["sh", "-c", "echo tokens=$EXAMPLE_TOKENS; exec sleep 300"],
        "resources": {"example": {"tokens": 3}, "cpus": 0.5},
    }));
    let container = agent.api("GET", "/v1/containers/c1", None).body;
    assert_eq!(
        container["resources"],
        json!({"cpus": 0.5, "example": {"tokens": 3}})
    );
    assert!(container["isolation"]
        .as_array()
        .unwrap()
        .contains(&json!("example")));
    common::eventually(
        std::time::Duration::from_secs(10),
        "the container prints its tokens",
        || {
            let logs = agent.api("GET", "/v1/containers/c1/logs?stream=stdout", None);
            String::from_utf8_lossy(&logs.raw)
                .contains("tokens=3")
                .then_some(())
        },
    );

    // Its usage keys show up in stats, under its name.
    let stats = agent.api("GET", "/v1/containers/c1/stats", None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats.body["isolators"]["example"]["tokens"], 3);
    assert_eq!(stats.body["isolators"]["example"]["max_tokens"], 10);

    // Its validation: 400 naming its field, and nothing made.
    for bad in [
        json!({"tokens": 11}),
        json!({"tokens": "x"}),
        json!({"gold": 1}),
    ] {
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({"id": "c2", "command": ["true"], "resources": {"example": bad}})),
        );
        assert_eq!(answer.status, 400, "{bad}: {:?}", answer.body);
        let expected = if bad.get("gold").is_some() {
            "resources.example"
        } else {
            "resources.example.tokens"
        };
        assert!(
            message(&answer).contains(expected),
            "{bad}: {:?}",
            answer.body
        );
    }
    assert_eq!(agent.api("GET", "/v1/containers/c2", None).status, 404);
    assert!(!agent.container_dir("c2").exists());

    // Update: its section merges, a built-in's flat key beside it too, and
    // the other sections keep their values.
    let patch = |body: Value| agent.api("PATCH", "/v1/containers/c1/resources", Some(body));
    let answer = patch(json!({"example": {"tokens": 5}}));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        answer.body["resources"],
        json!({"cpus": 0.5, "example": {"tokens": 5}})
    );
    let answer = patch(json!({"cpu": {"cpus": 0.8}}));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        answer.body["resources"],
        json!({"cpus": 0.8, "example": {"tokens": 5}})
    );
    let stats = agent.api("GET", "/v1/containers/c1/stats", None).body;
    assert_eq!(stats["isolators"]["example"]["tokens"], 5);
    // A bad update is refused by the isolator, naming the field as asked.
    let answer = patch(json!({"example": {"tokens": 99}}));
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(message(&answer).contains("resources.example.tokens"));
    let answer = patch(json!({"cpu": {"cpus": 0}}));
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(
        message(&answer).contains("resources.cpu.cpus"),
        "{:?}",
        answer.body
    );
    assert_eq!(
        agent.api("GET", "/v1/containers/c1/stats", None).body["isolators"]["example"]["tokens"],
        5
    );

    // The CLI reaches the section with no flag of its own.
    let out = agent.berth(&["update", "c1", "--resource", "example.tokens=4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        agent.api("GET", "/v1/containers/c1/stats", None).body["isolators"]["example"]["tokens"],
        4
    );
    let out = agent.berth(&["update", "c1", "--resource", "example.tokens=12"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resources.example.tokens"), "{stderr}");
}

/// One truth for limits (decision 0037): the bundle's `linux.resources` is
/// rewritten by an update, so `config.json` never says an old limit.
#[test]
fn an_update_rewrites_the_limits_in_config_json() {
    require_root!();
    let agent = Agent::start();
    let launched = agent.launch(json!({
        "id": "c1",
        "command": ["sleep", "300"],
        "isolation": ["cpu", "memory", "pids"],
        "resources": {"cpus": 0.5, "memory": 64u64 << 20, "pids_limit": 50},
    }));
    let spec = || -> Value {
        let bundle = PathBuf::from(launched["bundle"].as_str().unwrap());
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
    };
    let before = spec();
    assert_eq!(before["linux"]["resources"]["cpu"]["shares"], 512);
    assert_eq!(before["linux"]["resources"]["memory"]["limit"], 64u64 << 20);
    let answer = agent.api(
        "PATCH",
        "/v1/containers/c1/resources",
        Some(json!({"cpus": 1.5, "memory": {"memory": 128u64 << 20}, "pids_limit": 80})),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let after = spec();
    assert_eq!(after["linux"]["resources"]["cpu"]["shares"], 1536);
    assert_eq!(after["linux"]["resources"]["cpu"]["quota"], 150000);
    assert_eq!(after["linux"]["resources"]["memory"]["limit"], 128u64 << 20);
    assert_eq!(after["linux"]["resources"]["pids"]["limit"], 80);
    // What no isolator rewrote (the device rules) is kept as it was.
    assert_eq!(
        after["linux"]["resources"]["devices"],
        before["linux"]["resources"]["devices"]
    );
    // A refused update changes neither the limits nor the bundle.
    let answer = agent.api(
        "PATCH",
        "/v1/containers/c1/resources",
        Some(json!({"cpus": 0})),
    );
    assert_eq!(answer.status, 400);
    assert_eq!(spec(), after);
}
