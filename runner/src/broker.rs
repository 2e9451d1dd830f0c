//! `holdfast broker`: a ZeroMQ XSUB/XPUB forwarder for scale-out.
//! Publishers connect PUB sockets to its input (`--in`), the handlers of
//! every Holdfast instance connect their SUB input to its output (`--out`,
//! with `push_in_sub_connect=true`), and each publish reaches every
//! instance that has a subscriber on its channel, once. Subscriptions flow
//! back to the publishers (verbose: every instance's, so a publisher can
//! tell when all of them listen).

/// Forwards until the process is stopped.
pub fn run(input: &str, output: &str) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let frontend = ctx.socket(zmq::XSUB)?;
    frontend
        .bind(input)
        .map_err(|e| anyhow::anyhow!("cannot bind --in {input}: {e}"))?;
    let backend = ctx.socket(zmq::XPUB)?;
    backend.set_xpub_verbose(true)?;
    backend
        .bind(output)
        .map_err(|e| anyhow::anyhow!("cannot bind --out {output}: {e}"))?;
    tracing::info!(target: holdfast_runtime::LIFECYCLE, %input, %output, phase = "ready", "broker ready");
    zmq::proxy(&frontend, &backend)?;
    Ok(())
}
