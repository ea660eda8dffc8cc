//! `zz client add NAME` and `zz client list`: key files that let a client speak for its own
//! ids only (`clients/NAME.toml`; `keys/clients.toml` stays with the operator).

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use zz_protocol::config::list_client_files;

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Give a new client its own range of client ids and a key file holding only their
    /// keys: `clients/NAME.toml`, for `zz kv|bank|bench --client NAME`, or to hand over.
    Add(AddArgs),
    /// List the client key files and the ids each holds.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The client's name: 1 to 64 characters of [a-z0-9-].
    pub name: String,
    /// How many client ids it gets (one per concurrent request it may have outstanding).
    #[arg(long, default_value_t = 1)]
    pub ids: u64,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
}

pub fn run(command: &ClientCommand) -> Result<()> {
    match command {
        ClientCommand::Add(args) => {
            let (file, path) = zz_cluster::add_client(&args.dir, &args.name, args.ids)?;
            let ids = file.ids();
            println!(
                "wrote {} (client ids {}..{}; it holds their keys only: hand it over, keep \
                 keys/ to yourself)",
                path.display(),
                ids.start,
                ids.end
            );
        }
        ClientCommand::List(args) => {
            for file in list_client_files(&args.dir)? {
                let ids = file.ids();
                println!("{:<24} ids {}..{}", file.name, ids.start, ids.end);
            }
        }
    }
    Ok(())
}
