pub async fn run(_g: &crate::common::GlobalArgs, _a: Args) -> anyhow::Result<()> {
    anyhow::bail!("demo: being written")
}
#[derive(Debug, clap::Args)]
pub struct Args {}
