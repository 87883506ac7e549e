//! What the archive comparators share: pairing members by name, the order
//! check, and the budget of members explained per archive.

use std::collections::{HashMap, HashSet};

use super::causes::{guess, merge, Evidence};
use super::{explain_at, Cause, Change, Context, Detail, Parts, MAX_MEMBERS};

/// How many names a [`Detail::MemberOrder`] lists on each side.
const ORDER_NAMES: usize = 20;

/// The details of one archive comparison as they are found, within the
/// member budget.
#[derive(Debug)]
pub(crate) struct Collector<'c> {
    pub context: &'c Context,
    pub depth: usize,
    pub evidence: Evidence,
    details: Vec<Detail>,
    causes: Vec<Cause>,
    shown: usize,
    hidden: usize,
}

impl<'c> Collector<'c> {
    pub fn new(context: &'c Context, depth: usize) -> Self {
        Collector {
            context,
            depth,
            evidence: Evidence::default(),
            details: Vec::new(),
            causes: Vec::new(),
            shown: 0,
            hidden: 0,
        }
    }

    /// A detail about the archive as a whole (outside the budget).
    pub fn archive(&mut self, detail: Detail) {
        self.details.push(detail);
    }

    /// Whether another member's differences will be listed; when not, the
    /// member is counted, and callers skip the work of explaining it.
    pub fn has_room(&mut self) -> bool {
        if self.shown < MAX_MEMBERS {
            true
        } else {
            self.hidden += 1;
            false
        }
    }

    /// Lists one member's differences (after [`Collector::has_room`]).
    pub fn member(&mut self, details: Vec<Detail>) {
        if !details.is_empty() {
            self.shown += 1;
            self.details.extend(details);
        }
    }

    /// Explains a member's differing content (its own format detected) and
    /// takes over its causes.
    pub fn content(&mut self, name: &str, a: &[u8], b: &[u8]) -> Detail {
        let explanation = explain_at(name, a, b, self.context, self.depth + 1);
        merge(&mut self.causes, explanation.causes.iter().cloned());
        member(name, Change::Content(explanation))
    }

    /// Presence and order: a detail for every member only on one side, and
    /// a [`Detail::MemberOrder`] (with a reordering cause) when the members
    /// both sides have come in another order.
    pub fn presence_and_order(&mut self, a: &[String], b: &[String]) {
        let (in_a, in_b): (HashSet<&String>, HashSet<&String>) = (a.iter().collect(), b.iter().collect());
        let common_a: Vec<&String> = a.iter().filter(|name| in_b.contains(name)).collect();
        let common_b: Vec<&String> = b.iter().filter(|name| in_a.contains(name)).collect();
        if common_a != common_b {
            self.details.push(Detail::MemberOrder {
                a: a.iter().take(ORDER_NAMES).cloned().collect(),
                b: b.iter().take(ORDER_NAMES).cloned().collect(),
            });
            self.causes.push(Cause::Reordering);
        }
        for name in a.iter().filter(|name| !in_b.contains(name)) {
            if self.has_room() {
                self.member(vec![member(name, Change::Removed)]);
            }
        }
        for name in b.iter().filter(|name| !in_a.contains(name)) {
            if self.has_room() {
                self.member(vec![member(name, Change::Added)]);
            }
        }
    }

    /// The details and causes: own evidence first, then the members'.
    pub fn finish(mut self) -> Parts {
        if self.hidden > 0 {
            self.details.push(Detail::Note {
                text: format!("{} more members differ; only the first {MAX_MEMBERS} are listed", self.hidden),
            });
        }
        let mut causes = guess(&self.evidence, self.context);
        causes.retain(|cause| *cause != Cause::Random);
        merge(&mut causes, self.causes);
        Parts { details: self.details, causes }
    }
}

/// A member detail.
pub(crate) fn member(name: &str, change: Change) -> Detail {
    Detail::Member { name: name.to_owned(), change: Box::new(change) }
}

/// A header detail for one field of a member.
pub(crate) fn header(field: String, a: impl ToString, b: impl ToString) -> Detail {
    Detail::Header { field, a: a.to_string(), b: b.to_string() }
}

/// The pairs of members with one name on both sides, in the first side's
/// order (a name that occurs twice pairs its first occurrences).
pub(crate) fn pairs(a: &[String], b: &[String]) -> Vec<(usize, usize)> {
    let mut index_b: HashMap<&String, usize> = HashMap::new();
    for (i, name) in b.iter().enumerate().rev() {
        index_b.insert(name, i);
    }
    let mut seen = HashSet::new();
    a.iter()
        .enumerate()
        .filter(|(_, name)| seen.insert(*name))
        .filter_map(|(i, name)| index_b.get(name).map(|&j| (i, j)))
        .collect()
}

/// A Unix mode's permission bits as four octal digits.
pub(crate) fn mode_string(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}
