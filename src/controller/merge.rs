//! One cache over several namespaced watches (`--namespace a,b`), so each controller keeps one
//! store as it has with one cluster-wide watch.
//!
//! The store's writer takes one watch's events: `Init`, `InitApply`s and `InitDone` replace
//! everything. Several watches fed to it as they are would each replace the others' objects at
//! their `InitDone`. [`Merge`] turns them into what one watch would say: one initial list (done
//! when every namespace has listed once, so readiness still means "everything listed"), then
//! each namespace's relist as applies, followed by deletes of what that namespace no longer has.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};

use super::scope::Scope;

/// The state of merging `n` watches (one per namespace) into one event stream.
pub struct Merge {
    ar: ApiResource,
    namespaces: Vec<String>,
    /// What the writer holds (read at a namespace's relist end, to find what it lost).
    store: Store<DynamicObject>,
    /// The merged `Init` was sent.
    began: bool,
    /// Until every watch has listed once, objects go to the writer's buffer.
    initial: bool,
    listed: Vec<bool>,
    /// Names listed since the watch's last `Init` (None: not relisting).
    seen: Vec<Option<HashSet<String>>>,
    /// Initial phase: names sent to the buffer, and those of them still there.
    buffered: Vec<HashSet<String>>,
    alive: Vec<HashSet<String>>,
}

impl Merge {
    pub fn new(ar: ApiResource, namespaces: Vec<String>, store: Store<DynamicObject>) -> Merge {
        let n = namespaces.len();
        Merge {
            ar,
            namespaces,
            store,
            began: false,
            initial: true,
            listed: vec![false; n],
            seen: vec![None; n],
            buffered: vec![HashSet::new(); n],
            alive: vec![HashSet::new(); n],
        }
    }

    /// What the writer gets for event `ev` of watch `i`.
    pub fn on(&mut self, i: usize, ev: Event<DynamicObject>) -> Vec<Event<DynamicObject>> {
        if i >= self.namespaces.len() {
            return Vec::new();
        }
        if self.initial {
            return self.initially(i, ev);
        }
        match ev {
            Event::Init => {
                self.seen[i] = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(o) | Event::Apply(o) => {
                if let Some(s) = self.seen[i].as_mut() {
                    s.insert(o.name_any());
                }
                vec![Event::Apply(o)]
            }
            Event::Delete(o) => {
                if let Some(s) = self.seen[i].as_mut() {
                    s.remove(&o.name_any());
                }
                vec![Event::Delete(o)]
            }
            Event::InitDone => {
                let Some(seen) = self.seen[i].take() else {
                    return Vec::new();
                };
                let ns = self.namespaces[i].as_str();
                self.store
                    .state()
                    .iter()
                    .filter(|o| {
                        o.namespace().as_deref() == Some(ns) && !seen.contains(&o.name_any())
                    })
                    .map(|o| Event::Delete((**o).clone()))
                    .collect()
            }
        }
    }

    /// Before every watch has listed: one `Init`, everything as `InitApply`, one `InitDone` at
    /// the end followed by deletes of what went away meanwhile.
    fn initially(&mut self, i: usize, ev: Event<DynamicObject>) -> Vec<Event<DynamicObject>> {
        let mut out = Vec::new();
        if !self.began {
            self.began = true;
            out.push(Event::Init);
        }
        match ev {
            Event::Init => {
                self.seen[i] = Some(HashSet::new());
                self.alive[i].clear();
            }
            Event::InitApply(o) | Event::Apply(o) => {
                let name = o.name_any();
                if let Some(s) = self.seen[i].as_mut() {
                    s.insert(name.clone());
                }
                self.buffered[i].insert(name.clone());
                self.alive[i].insert(name);
                out.push(Event::InitApply(o));
            }
            Event::Delete(o) => {
                let name = o.name_any();
                if let Some(s) = self.seen[i].as_mut() {
                    s.remove(&name);
                }
                self.alive[i].remove(&name);
            }
            Event::InitDone => {
                self.listed[i] = true;
                // A relist that ends now is complete; one still running goes on as a relist.
                self.seen[i] = None;
                if self.listed.iter().all(|l| *l) {
                    self.initial = false;
                    out.push(Event::InitDone);
                    for (j, ns) in self.namespaces.iter().enumerate() {
                        let gone = self.buffered[j].difference(&self.alive[j]);
                        out.extend(
                            gone.map(|n| Event::Delete(DynamicObject::new(n, &self.ar).within(ns))),
                        );
                    }
                    self.buffered = Vec::new();
                    self.alive = Vec::new();
                }
            }
        }
        out
    }
}

/// A watched and cached kind in `scope` (a watch per namespace, or one cluster-wide): its store
/// and its events (as one watch's, after the store has them). Each watch has a backoff of its own.
pub fn reflected(
    scope: &Scope,
    client: &Client,
    wc: watcher::Config,
    ar: &ApiResource,
) -> (
    Store<DynamicObject>,
    impl Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Send + 'static,
) {
    let writer = Writer::new(ar.clone());
    let store = writer.as_reader();
    let namespaces = match scope {
        Scope::Cluster => vec![String::new()],
        Scope::Namespaces(l) => l.clone(),
    };
    let watches = scope
        .dynamic(client, ar)
        .into_iter()
        .enumerate()
        .map(|(i, api)| {
            watcher::watcher(api, wc.clone())
                .default_backoff()
                .map(move |e| (i, e))
                .boxed()
        });
    let mut merge = Merge::new(ar.clone(), namespaces, store.clone());
    let single = merge.namespaces.len() <= 1;
    let stream = futures::stream::select_all(watches)
        .flat_map(move |(i, r)| {
            let events: Vec<Result<Event<DynamicObject>, watcher::Error>> = match r {
                // One watch needs no merging: as it is.
                Ok(ev) if single => vec![Ok(ev)],
                Ok(ev) => merge.on(i, ev).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(events)
        })
        .reflect(writer);
    (store, stream)
}

/// The changes of several watches, no cache (for triggers: each object's own events suffice).
/// [`touched`], with every watch event shown to `seen` first.
pub fn touched_seen<K>(
    apis: Vec<Api<K>>,
    wc: watcher::Config,
    seen: impl Fn(&watcher::Event<K>) + Clone + Send + Sync + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    futures::stream::select_all(apis.into_iter().map(move |api| {
        let seen = seen.clone();
        watcher::watcher(api, wc.clone())
            .default_backoff()
            .inspect(move |r| {
                if let Ok(ev) = r {
                    seen(ev);
                }
            })
            .touched_objects()
            .boxed()
    }))
}

pub fn touched<K>(
    apis: Vec<Api<K>>,
    wc: watcher::Config,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    futures::stream::select_all(apis.into_iter().map(|api| {
        watcher::watcher(api, wc.clone())
            .default_backoff()
            .touched_objects()
            .boxed()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ar() -> ApiResource {
        crate::controller::resource(crate::api::Kind::Server)
    }

    fn obj(ns: &str, name: &str) -> DynamicObject {
        DynamicObject::new(name, &ar()).within(ns)
    }

    /// A merge over namespaces a and b feeding a real store writer.
    struct Rig {
        merge: Merge,
        writer: Writer<DynamicObject>,
        store: Store<DynamicObject>,
    }

    impl Rig {
        fn new() -> Rig {
            let writer = Writer::new(ar());
            let store = writer.as_reader();
            let merge = Merge::new(ar(), vec!["a".into(), "b".into()], store.clone());
            Rig {
                merge,
                writer,
                store,
            }
        }
        fn feed(&mut self, i: usize, ev: Event<DynamicObject>) {
            for e in self.merge.on(i, ev) {
                self.writer.apply_watcher_event(&e);
            }
        }
        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .store
                .state()
                .iter()
                .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
                .collect();
            v.sort();
            v
        }
        fn ready(&self) -> bool {
            futures::executor::block_on(async {
                futures::poll!(std::pin::pin!(self.store.wait_until_ready())).is_ready()
            })
        }
    }

    #[test]
    fn the_first_list_is_done_when_every_namespace_has_listed() {
        let mut r = Rig::new();
        r.feed(0, Event::Init);
        r.feed(0, Event::InitApply(obj("a", "x")));
        r.feed(0, Event::InitDone);
        r.feed(1, Event::Init);
        r.feed(0, Event::Apply(obj("a", "y")));
        r.feed(1, Event::InitApply(obj("b", "z")));
        assert!(!r.ready(), "ready before b listed");
        // Gone from a while b still lists: not in the store once ready.
        r.feed(0, Event::Delete(obj("a", "x")));
        r.feed(1, Event::InitDone);
        assert!(r.ready());
        assert_eq!(r.names(), ["a/y", "b/z"]);
    }

    #[test]
    fn a_relist_of_one_namespace_keeps_the_others_and_drops_what_it_lost() {
        let mut r = Rig::new();
        for (i, ns) in [(0, "a"), (1, "b")] {
            r.feed(i, Event::Init);
            r.feed(i, Event::InitApply(obj(ns, "one")));
            r.feed(i, Event::InitApply(obj(ns, "two")));
            r.feed(i, Event::InitDone);
        }
        assert_eq!(r.names(), ["a/one", "a/two", "b/one", "b/two"]);
        // a's watch restarts (a 410, say): "two" was deleted meanwhile.
        r.feed(0, Event::Init);
        r.feed(0, Event::InitApply(obj("a", "one")));
        r.feed(1, Event::Apply(obj("b", "three")));
        r.feed(0, Event::InitApply(obj("a", "four")));
        r.feed(0, Event::InitDone);
        assert_eq!(r.names(), ["a/four", "a/one", "b/one", "b/three", "b/two"]);
        r.feed(1, Event::Delete(obj("b", "one")));
        assert_eq!(r.names(), ["a/four", "a/one", "b/three", "b/two"]);
    }

    #[test]
    fn a_namespace_that_restarts_during_the_first_list_loses_what_it_no_longer_lists() {
        let mut r = Rig::new();
        r.feed(0, Event::Init);
        r.feed(0, Event::InitApply(obj("a", "old")));
        r.feed(0, Event::InitDone);
        r.feed(0, Event::Init);
        r.feed(0, Event::InitApply(obj("a", "new")));
        r.feed(1, Event::Init);
        r.feed(1, Event::InitDone);
        assert!(r.ready());
        assert_eq!(r.names(), ["a/new"]);
        // a's relist goes on after the first list, and ends as a relist.
        r.feed(0, Event::InitApply(obj("a", "late")));
        r.feed(0, Event::InitDone);
        assert_eq!(r.names(), ["a/late", "a/new"]);
    }
}
