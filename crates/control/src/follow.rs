//! Following a run's events from any seq: the log first, then the bus.
//!
//! The run log is the truth; the bus only makes following fast. A [`Follower`] reads the log
//! from the seq it is given, then takes new events from the bus while they arrive in order, and
//! goes back to the log whenever it sees a gap (it lagged behind the bus, or the run is driven
//! by another process, whose events reach this one only through the store: the log is read
//! again at a poll interval while the bus is quiet). So a subscriber that reconnects with the
//! last seq it saw (`Last-Event-ID`) misses nothing and sees nothing twice, whichever process
//! runs the run.

use std::sync::Arc;
use std::time::Duration;

use baton_store::RunStore;
use baton_types::{Event, EventRecord, ModelDelta, RunId};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::runner::{BusEvent, BusItem};
use crate::{Caller, Control};

/// Whether `ev` ends its run (nothing follows it until someone resumes the run).
pub fn ends_run(ev: &Event) -> bool {
    matches!(
        ev,
        Event::RunSucceeded { .. } | Event::RunFailed { .. } | Event::RunCancelled
    )
}

impl Control {
    /// Follows run `run` of the caller's tenant from the event after `after` (0: from the
    /// start), live: see [`Follower`].
    pub async fn follow(&self, caller: &Caller, run: &str, after: u64) -> Result<Follower> {
        // Subscribed before the run is even looked up: nothing published after this is lost.
        let rx = self.subscribe();
        let rec = self.find_run(caller, run).await?;
        Ok(Follower::new(
            self.services.store.clone(),
            rx,
            rec.id,
            after,
        ))
    }
}

/// What a follower hands out.
#[derive(Clone, Debug)]
pub enum Followed {
    Event(Arc<EventRecord>),
    Delta(Arc<ModelDelta>),
}

/// Follows one run's events in seq order from a given seq, without gaps or repeats.
pub struct Follower {
    store: Arc<dyn RunStore>,
    rx: broadcast::Receiver<BusEvent>,
    run: RunId,
    /// The last seq handed out.
    last: u64,
    /// Read from the log but not handed out yet.
    pending: std::collections::VecDeque<Arc<EventRecord>>,
    deltas: bool,
    /// How often the log is read while the bus is quiet (runs driven by other processes).
    poll: Duration,
    /// Stop after the event that ends the run.
    stop_at_end: bool,
    ended: bool,
    /// The log has been read once (the first call reads it).
    primed: bool,
}

impl Follower {
    /// `rx` must be subscribed before the log is read (the first [`Follower::next`] reads
    /// it), so that nothing falls between the two.
    pub fn new(
        store: Arc<dyn RunStore>,
        rx: broadcast::Receiver<BusEvent>,
        run: RunId,
        after: u64,
    ) -> Self {
        Self {
            rx,
            store,
            run,
            last: after,
            pending: Default::default(),
            deltas: false,
            poll: Duration::from_millis(500),
            stop_at_end: true,
            ended: false,
            primed: false,
        }
    }

    /// Also hand out model output as it streams (only while following live).
    pub fn with_deltas(mut self, on: bool) -> Self {
        self.deltas = on;
        self
    }

    pub fn with_poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Keep following after the run ends (it may be resumed); default: stop.
    pub fn until_end(mut self, stop: bool) -> Self {
        self.stop_at_end = stop;
        self
    }

    /// The last seq handed out.
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    async fn read_log(&mut self) -> Result<()> {
        let events = self.store.events(self.run, self.last).await?;
        let mut seq = self.last;
        for e in events {
            if e.seq == seq + 1 {
                seq = e.seq;
                self.pending.push_back(Arc::new(e));
            }
        }
        Ok(())
    }

    fn hand_out(&mut self, rec: Arc<EventRecord>) -> Followed {
        self.last = rec.seq;
        if self.stop_at_end && ends_run(&rec.event) {
            self.ended = true;
        }
        Followed::Event(rec)
    }

    /// The next event (or delta); `None` once the run has ended (see [`Follower::until_end`]).
    pub async fn next(&mut self) -> Option<Result<Followed>> {
        if !self.primed {
            // First call: everything logged after the given seq so far.
            self.primed = true;
            if let Err(e) = self.read_log().await {
                return Some(Err(e));
            }
        }
        loop {
            if let Some(rec) = self.pending.pop_front() {
                return Some(Ok(self.hand_out(rec)));
            }
            if self.ended {
                return None;
            }
            let msg = tokio::select! {
                m = self.rx.recv() => m,
                () = tokio::time::sleep(self.poll) => {
                    if let Err(e) = self.read_log().await {
                        return Some(Err(e));
                    }
                    continue;
                }
            };
            match msg.map(|m| m.item) {
                Ok(BusItem::Event(record)) if record.run_id == self.run => {
                    if record.seq <= self.last {
                        continue;
                    }
                    if record.seq == self.last + 1 {
                        return Some(Ok(self.hand_out(record)));
                    }
                    // A gap: what lies between is in the log.
                    if let Err(e) = self.read_log().await {
                        return Some(Err(e));
                    }
                }
                Ok(BusItem::Delta(delta)) if self.deltas && delta.run_id == self.run => {
                    return Some(Ok(Followed::Delta(delta)));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(e) = self.read_log().await {
                        return Some(Err(e));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // No more live events in this process: the log alone, at the poll pace.
                    tokio::time::sleep(self.poll).await;
                    if let Err(e) = self.read_log().await {
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_store::memory::MemoryStore;
    use baton_store::{Batch, NewRun};
    use baton_types::TenantId;
    use serde_json::json;

    fn rec(run: RunId, seq: u64, event: Event) -> EventRecord {
        EventRecord {
            run_id: run,
            seq,
            at_ms: 0,
            event,
        }
    }

    fn started(run: RunId, seq: u64) -> EventRecord {
        rec(run, seq, Event::RunStarted { resumed: false })
    }

    fn publish(bus: &broadcast::Sender<BusEvent>, ev: EventRecord) {
        let _ = bus.send(BusEvent {
            tenant: TenantId::default(),
            item: BusItem::Event(Arc::new(ev)),
        });
    }

    async fn store_with_run() -> (Arc<dyn RunStore>, RunId) {
        let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
        let run = RunId::new();
        store
            .create_run(NewRun {
                id: run,
                workflow_name: "w".into(),
                workflow_source: String::new(),
                workflow_path: None,
                inputs: json!({"x": 1}),
                options: json!({}),
                created_at_ms: 0,
                tenant: TenantId::default(),
                started_by: None,
                idempotency: None,
                events: vec![rec(
                    run,
                    1,
                    Event::RunCreated {
                        workflow: "w".into(),
                        inputs: serde_json::Value::Null,
                        forked_from: None,
                    },
                )],
            })
            .await
            .unwrap();
        (store, run)
    }

    async fn append(store: &Arc<dyn RunStore>, ev: EventRecord) {
        store
            .append(
                ev.run_id,
                Batch {
                    events: vec![ev],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    async fn seq_of(f: &mut Follower) -> u64 {
        match f.next().await.unwrap().unwrap() {
            Followed::Event(e) => e.seq,
            Followed::Delta(_) => panic!("a delta"),
        }
    }

    #[tokio::test]
    async fn reads_the_log_then_the_bus_without_repeats_or_gaps() {
        let (store, run) = store_with_run().await;
        let bus = broadcast::channel::<BusEvent>(16).0;
        let mut f = Follower::new(store.clone(), bus.subscribe(), run, 0)
            .with_poll(Duration::from_secs(60));
        assert_eq!(seq_of(&mut f).await, 1);
        // Logged and published (a run driven here): handed out once.
        for seq in 2..=3 {
            let ev = started(run, seq);
            append(&store, ev.clone()).await;
            publish(&bus, ev);
        }
        // A repeat of an old one is dropped.
        publish(&bus, started(run, 2));
        assert_eq!(seq_of(&mut f).await, 2);
        assert_eq!(seq_of(&mut f).await, 3);
        // Seq 4 only in the log, 5 on the bus: the gap is read from the log.
        append(&store, started(run, 4)).await;
        let five = rec(run, 5, Event::RunCancelled);
        append(&store, five.clone()).await;
        publish(&bus, five);
        assert_eq!(seq_of(&mut f).await, 4);
        assert_eq!(seq_of(&mut f).await, 5);
        // The run ended.
        assert!(f.next().await.is_none());
    }

    #[tokio::test]
    async fn resumes_after_a_given_seq_and_polls_runs_driven_elsewhere() {
        let (store, run) = store_with_run().await;
        append(&store, started(run, 2)).await;
        let bus = broadcast::channel::<BusEvent>(16).0;
        let mut f = Follower::new(store.clone(), bus.subscribe(), run, 1)
            .with_poll(Duration::from_millis(10));
        assert_eq!(seq_of(&mut f).await, 2);
        // Nothing on the bus: another process appends, the poll finds it.
        let store2 = store.clone();
        tokio::spawn(async move { append(&store2, rec(run, 3, Event::RunCancelled)).await });
        assert_eq!(seq_of(&mut f).await, 3);
        assert!(f.next().await.is_none());
    }

    #[tokio::test]
    async fn a_lagging_follower_catches_up_from_the_log() {
        let (store, run) = store_with_run().await;
        let bus = broadcast::channel::<BusEvent>(16).0;
        let mut f = Follower::new(store.clone(), bus.subscribe(), run, 1)
            .with_poll(Duration::from_secs(60));
        for seq in 2..=60 {
            let ev = started(run, seq);
            append(&store, ev.clone()).await;
            publish(&bus, ev);
        }
        for want in 2..=60 {
            assert_eq!(seq_of(&mut f).await, want);
        }
    }
}
