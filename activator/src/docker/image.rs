//! The node image, built with no registry: the running zz binary, statically linked, alone
//! in a `FROM scratch` image tagged by the binary's hash, so it is rebuilt only when the
//! binary changes.

use super::DockerError;
use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;
use std::path::Path;

/// The image's repository; the tag is the binary's hash.
pub const IMAGE_REPOSITORY: &str = "zz";
/// Hex digits of the binary's SHA-256 in the tag.
const TAG_HEX_DIGITS: usize = 12;
const DOCKERFILE: &str = "FROM scratch\nCOPY zz /zz\nENTRYPOINT [\"/zz\"]\n";

/// The image name for a binary: "zz:" and the start of its SHA-256.
pub fn image_name(binary: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(binary);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{IMAGE_REPOSITORY}:{}", &hex[..TAG_HEX_DIGITS])
}

/// Why `binary` cannot run alone in a `FROM scratch` image, if it cannot.
pub fn static_problem(binary: &[u8]) -> Option<String> {
    const PT_INTERP: u32 = 3;
    let field = |at: usize, len: usize| binary.get(at..at + len);
    if field(0, 4) != Some(b"\x7fELF") || field(4, 1) != Some(&[2]) || field(5, 1) != Some(&[1]) {
        return Some("it is not a 64-bit little-endian ELF executable".to_string());
    }
    let read = |at: usize, len: usize| -> Option<u64> {
        let bytes = field(at, len)?;
        Some((bytes.iter().rev()).fold(0u64, |value, byte| (value << 8) | u64::from(*byte)))
    };
    let (Some(table), Some(entry_size), Some(entries)) =
        (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    else {
        return Some("its ELF header is cut short".to_string());
    };
    for index in 0..entries {
        let Some(kind) = usize::try_from(table + index * entry_size)
            .ok()
            .and_then(|at| read(at, 4))
        else {
            return Some("its program headers are cut short".to_string());
        };
        if kind == u64::from(PT_INTERP) {
            return Some(
                "it is dynamically linked (it names a program interpreter); build it static: \
                 the workspace's .cargo/config.toml does, with `-C target-feature=+crt-static`"
                    .to_string(),
            );
        }
    }
    None
}

/// A tar archive holding the Dockerfile and the binary.
fn build_context(binary: &[u8]) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut append = |path: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive
            .append_data(&mut header, path, data)
            .expect("writing to memory cannot fail");
    };
    append("Dockerfile", 0o644, DOCKERFILE.as_bytes());
    append("zz", 0o755, binary);
    archive.into_inner().expect("writing to memory cannot fail")
}

/// Whether the image exists, and the image name, for the binary at `exe`; built when it
/// is missing. Returns (name, built now).
pub async fn ensure_image(docker: &Docker, exe: &Path) -> Result<(String, bool), DockerError> {
    let binary = std::fs::read(exe).map_err(|error| DockerError::File {
        path: exe.display().to_string(),
        detail: error.to_string(),
    })?;
    let name = image_name(&binary);
    if docker.inspect_image(&name).await.is_ok() {
        return Ok((name, false));
    }
    if let Some(problem) = static_problem(&binary) {
        return Err(DockerError::Image(format!(
            "cannot build image {name} from {}: {problem}",
            exe.display()
        )));
    }
    let context = build_context(&binary);
    drop(binary);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&name)
        .rm(true)
        .forcerm(true)
        .build();
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = progress.next().await {
        let failed = match step {
            Ok(info) => info.error_detail.and_then(|detail| detail.message),
            Err(error) => Some(super::engine_message(&error)),
        };
        if let Some(message) = failed {
            return Err(DockerError::Image(format!(
                "building image {name} failed: {}",
                message.trim()
            )));
        }
    }
    // A build that reported no error but left no image is a failure too.
    docker.inspect_image(&name).await.map_err(|error| {
        DockerError::Image(format!("image {name} missing after its build: {error}"))
    })?;
    Ok((name, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_binary() {
        assert_eq!(image_name(b"one"), image_name(b"one"));
        assert_ne!(image_name(b"one"), image_name(b"two"));
        assert!(image_name(b"one").starts_with("zz:"));
    }

    #[test]
    fn a_dynamic_or_foreign_binary_is_refused() {
        assert!(
            static_problem(b"#!/bin/sh\n")
                .unwrap()
                .contains("not a 64-bit")
        );
        let dynamic = std::fs::read("/bin/sh").unwrap();
        assert!(
            static_problem(&dynamic)
                .unwrap()
                .contains("dynamically linked")
        );
    }

    #[test]
    fn this_test_binary_is_static_as_the_workspace_builds_it() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(static_problem(&own), None);
    }

    #[test]
    fn the_context_holds_the_dockerfile_and_an_executable_binary() {
        let context = build_context(b"\x7fELF...");
        let mut archive = tar::Archive::new(context.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let path = entry.path().unwrap().display().to_string();
                (path, entry.header().mode().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            vec![("Dockerfile".into(), 0o644), ("zz".into(), 0o755)]
        );
    }
}
