//! Signals: SIGTERM or SIGINT starts a graceful stop (stop reading, settle or
//! abandon what is in flight, commit what is settled); a second signal exits at
//! once; and the process ends within the hard deadline whatever happens.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The whole stop, from the first signal to the process exit.
pub const HARD_DEADLINE: Duration = Duration::from_millis(9_500);

/// Cancels `token` on the first SIGTERM/SIGINT.
pub fn install(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stop requested: finishing in-flight work (signal again to exit at once)");
        token.cancel();
        tokio::spawn(async {
            tokio::time::sleep(HARD_DEADLINE).await;
            tracing::error!("the stop did not finish in time; exiting");
            std::process::exit(1);
        });
        wait_for_signal().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot listen for signals; the process can only be killed");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
