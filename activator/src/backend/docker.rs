//! The Docker backend: each execution replica is a container of the platform's image on
//! the platform network, at the address the cluster configuration gives it. A standby is
//! started, left to load, then `docker pause`d (the engine's cgroup freezer); a thaw
//! unpauses it and sends SIGUSR1, on which the node joins from the stable checkpoint; a
//! destroy removes the container, so the replacement starts from the clean image.
//!
//! With `cold_standbys` (a benchmark baseline) a standby has no container until it is
//! woken: the thaw creates and starts one and tells it to join once it has loaded, and
//! pausing it again removes it.

use super::process::start_as;
use super::{Backend, BackendError, Instance};
use crate::docker::{DockerError, DockerPlatform, short_id};
use bollard::Docker;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use zz_cluster::{ClusterDir, node_name};
use zz_protocol::config::ClusterConfig;
use zz_protocol::{ExecutionId, NodeId};

/// Ticks of `poll_started` between two listings of the engine's containers (which show
/// containers that died on their own).
const REFRESH_EVERY_POLLS: u32 = 25;

struct Container {
    /// Empty for a cold standby that has no container yet.
    id: String,
    /// A cold standby woken: it joins (SIGUSR1) once it has loaded.
    join_when_loaded: bool,
    /// Started and not reported by `poll_started` yet.
    starting: bool,
    standby: bool,
    paused: bool,
    /// The engine's word on it at the last listing ("running", "exited").
    observed: Option<String>,
}

/// See the module documentation.
pub struct DockerBackend {
    docker: Docker,
    platform: DockerPlatform,
    cluster: ClusterConfig,
    containers: BTreeMap<ExecutionId, Container>,
    polls: u32,
}

fn name(member: ExecutionId) -> String {
    node_name(NodeId::Execution(member))
}

fn failed(member: ExecutionId, action: &'static str) -> impl FnOnce(DockerError) -> BackendError {
    move |error| BackendError::Io {
        member,
        action,
        source: std::io::Error::other(error.to_string()),
    }
}

impl DockerBackend {
    pub fn new(docker: Docker, platform: DockerPlatform, cluster: ClusterConfig) -> DockerBackend {
        DockerBackend {
            docker,
            platform,
            cluster,
            containers: BTreeMap::new(),
            polls: 0,
        }
    }

    fn dir(&self) -> ClusterDir {
        ClusterDir::new(&self.platform.dir)
    }

    fn status_path(&self, member: ExecutionId) -> PathBuf {
        self.dir().status_path(NodeId::Execution(member))
    }

    fn container(&mut self, member: ExecutionId) -> Result<&mut Container, BackendError> {
        self.containers
            .get_mut(&member)
            .ok_or(BackendError::NotRunning { member })
    }

    async fn refresh(&mut self) {
        let Ok(listed) = self.platform.containers(&self.docker).await else {
            return;
        };
        for container in self.containers.values_mut() {
            container.observed = (listed.iter())
                .find(|seen| seen.id == container.id)
                .map(|seen| seen.state.clone());
        }
    }
}

impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn start(&mut self, member: ExecutionId, standby: bool) -> Result<(), BackendError> {
        if standby && self.platform.cold_standbys {
            let placeholder = Container {
                id: String::new(),
                join_when_loaded: false,
                starting: true,
                standby,
                paused: true,
                observed: None,
            };
            self.containers.insert(member, placeholder);
            return Ok(());
        }
        let id = self.create(member, standby).await?;
        tracing::info!(%member, container = short_id(&id), standby, "started");
        let container = Container {
            id,
            join_when_loaded: false,
            starting: true,
            standby,
            paused: false,
            observed: Some("running".to_string()),
        };
        self.containers.insert(member, container);
        Ok(())
    }

    async fn poll_started(&mut self) -> Vec<ExecutionId> {
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(REFRESH_EVERY_POLLS) {
            self.refresh().await;
        }
        let joining: Vec<ExecutionId> = (self.containers.iter())
            .filter(|(member, c)| c.join_when_loaded && self.status_path(**member).exists())
            .map(|(member, _)| *member)
            .collect();
        for member in joining {
            self.containers
                .get_mut(&member)
                .expect("listed")
                .join_when_loaded = false;
            if let Err(error) = self
                .platform
                .signal(&self.docker, &name(member), "SIGUSR1")
                .await
            {
                tracing::warn!(%error, "a woken cold standby could not be told to join");
            }
        }
        let loaded: Vec<ExecutionId> = (self.containers.iter())
            .filter(|(member, container)| {
                let cold = container.id.is_empty();
                container.starting && (cold || self.status_path(**member).exists())
            })
            .map(|(member, _)| *member)
            .collect();
        let mut started = Vec::new();
        for member in loaded {
            let container = self.containers.get_mut(&member).expect("listed");
            container.starting = false;
            if container.standby
                && !container.id.is_empty()
                && let Err(error) = self.pause(member).await
            {
                tracing::warn!(%error, "a standby could not be paused");
                continue;
            }
            started.push(member);
        }
        started
    }

    async fn pause(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        if self.platform.cold_standbys {
            // A cold standby keeps nothing: it goes back to having no container.
            let id = std::mem::take(&mut self.container(member)?.id);
            if !id.is_empty() {
                (self.platform)
                    .remove_container(&self.docker, &id)
                    .await
                    .map_err(failed(member, "remove"))?;
            }
            let container = self.container(member)?;
            container.paused = true;
            container.observed = None;
            return Ok(());
        }
        let docker = self.docker.clone();
        let container = self.container(member)?;
        if container.paused {
            return Ok(());
        }
        docker
            .pause_container(&container.id)
            .await
            .map_err(DockerError::refused("pause"))
            .map_err(failed(member, "pause"))?;
        container.paused = true;
        container.observed = Some("paused".to_string());
        Ok(())
    }

    async fn thaw(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        if self.container(member)?.id.is_empty() {
            // A cold standby's container starts now, as a standby told to join.
            let id = self.create(member, true).await?;
            let container = self.container(member)?;
            container.id = id;
            container.paused = false;
            container.join_when_loaded = true;
            container.observed = Some("running".to_string());
            return Ok(());
        }
        let docker = self.docker.clone();
        let container = self.container(member)?;
        if container.paused {
            docker
                .unpause_container(&container.id)
                .await
                .map_err(DockerError::refused("unpause"))
                .map_err(failed(member, "unpause"))?;
            container.paused = false;
            container.observed = Some("running".to_string());
        }
        // The node joins from the stable checkpoint on SIGUSR1.
        (self.platform)
            .signal(&self.docker, &name(member), "SIGUSR1")
            .await
            .map_err(failed(member, "signal"))
    }

    async fn destroy(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        if let Some(container) = self.containers.remove(&member)
            && !container.id.is_empty()
        {
            // Removal with force kills a paused container too.
            (self.platform)
                .remove_container(&self.docker, &container.id)
                .await
                .map_err(failed(member, "remove"))?;
            tracing::info!(%member, container = short_id(&container.id), "destroyed");
        }
        let dir = self.dir();
        let node = NodeId::Execution(member);
        // Its state store goes too: a replacement woken and restarted before it wrote a
        // checkpoint of its own must not load the destroyed one's.
        // Its folders go whole: the destroyed replica wrote them, and its successor in the
        // slot must find nothing it left (files in the store's place, large leftovers).
        for file in [dir.pause_path(node), dir.fault_path(node)] {
            let _ = std::fs::remove_file(file);
        }
        for folder in [dir.node_state_dir(node), dir.node_run_dir(node)] {
            let _ = std::fs::remove_dir_all(folder);
        }
        Ok(())
    }

    fn instances(&self) -> BTreeMap<ExecutionId, Instance> {
        (self.containers.iter())
            .map(|(member, container)| {
                let state = match container.observed.as_deref() {
                    _ if container.id.is_empty() => "cold",
                    Some("running") | None if container.starting => "starting",
                    Some(state) => state,
                    None => "removed",
                };
                let instance = Instance {
                    pid: None,
                    container: (!container.id.is_empty())
                        .then(|| short_id(&container.id).to_string()),
                    state: state.to_string(),
                };
                (*member, instance)
            })
            .collect()
    }
}

impl DockerBackend {
    /// Create and start `member`'s container (it loads, then waits for SIGUSR1 if it is
    /// a standby); returns its id.
    async fn create(&mut self, member: ExecutionId, standby: bool) -> Result<String, BackendError> {
        let node = name(member);
        let config = self
            .cluster
            .execution(member)
            .ok_or(BackendError::NotRunning { member })?
            .clone();
        let IpAddr::V4(address) = config.address.ip() else {
            let problem = format!("{} is not an IPv4 address", config.address);
            return Err(BackendError::Io {
                member,
                action: "start",
                source: std::io::Error::other(problem),
            });
        };
        // A fresh replica owes nothing to its predecessor: no status, pause or fault.
        for stale in [
            self.status_path(member),
            self.dir().pause_path(NodeId::Execution(member)),
            self.dir().fault_path(NodeId::Execution(member)),
        ] {
            let _ = std::fs::remove_file(stale);
        }
        let app = (self.cluster.apps.iter())
            .find(|app| app.id == config.app)
            .map(|app| app.name.clone());
        let labels = self
            .platform
            .labels(&node, "execution", app.as_deref(), Some(&config.host));
        let mut args = self.platform.node_args("execution", member.0);
        args.extend(["--start-as".to_string(), start_as(standby).to_string()]);
        (self.platform)
            .run_node(
                &self.docker,
                NodeId::Execution(member),
                args,
                address,
                labels,
            )
            .await
            .map_err(failed(member, "start"))
    }
}
