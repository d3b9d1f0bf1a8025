//! Cancelling a streamed answer from outside.

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio_util::sync::CancellationToken;

use crate::{Chunk, Error};

/// `stream`, ended by `token`: when the token is cancelled the inner stream is dropped at once
/// (closing its connection, so the provider stops generating) and a last `Error::Cancelled`
/// is yielded.
pub fn cancellable(
    stream: BoxStream<'static, Result<Chunk, Error>>,
    token: CancellationToken,
) -> BoxStream<'static, Result<Chunk, Error>> {
    let state = Some((stream, token));
    stream::unfold(state, |state| async move {
        let (mut s, token) = state?;
        tokio::select! {
            biased;
            () = token.cancelled() => Some((Err(Error::Cancelled), None)),
            item = s.next() => item.map(|i| (i, Some((s, token)))),
        }
    })
    .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ends_with_cancelled_and_drops_the_inner_stream() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Chunk, Error>>();
        let token = CancellationToken::new();
        let mut s = cancellable(rx.boxed(), token.clone());
        tx.unbounded_send(Ok(Chunk::Text("a".into()))).unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), Chunk::Text("a".into()));
        token.cancel();
        assert!(matches!(s.next().await, Some(Err(Error::Cancelled))));
        assert!(s.next().await.is_none());
        // The receiver was dropped: the sender sees it.
        assert!(tx.unbounded_send(Ok(Chunk::Text("b".into()))).is_err());
    }

    #[tokio::test]
    async fn passes_everything_through_when_not_cancelled() {
        let items = vec![
            Ok(Chunk::Text("a".into())),
            Ok(Chunk::Done(crate::StopReason::EndTurn)),
        ];
        let s = cancellable(
            stream::iter(items.clone()).boxed(),
            CancellationToken::new(),
        );
        let got: Vec<_> = s.collect().await;
        assert_eq!(got.len(), 2);
        assert!(matches!(got[1], Ok(Chunk::Done(_))));
    }
}
