//! Partial evaluation of a compiled program: libseccomp's binary tree,
//! specialized per architecture and syscall range.
//!
//! libseccomp's tree for Docker's profile is about 1300 instructions, and
//! the kernel copies, checks, converts and JITs every one of them on each
//! attach, then runs the filter once per syscall number of each
//! architecture to build its action cache. Most of those instructions
//! only tell syscall numbers apart that end up with the same action.
//!
//! [`specialize`] runs the program itself abstractly with the
//! architecture and the syscall number as the only known inputs:
//!
//! 1. The architectures are the values the program compares
//!    `seccomp_data.arch` with (`JEQ k`), plus "none of those".
//! 2. Per architecture, the syscall numbers are split into intervals the
//!    program cannot tell apart: an evaluation over `[lo, hi]` that meets a
//!    comparison of the number it cannot decide for the whole interval
//!    splits it at the comparison's constant and starts again on each part.
//! 3. Over one interval the program is evaluated with everything else
//!    (arguments, instruction pointer) unknown: branches on known values
//!    are resolved, the rest is kept as a residual program. A residual
//!    that is a single `RET k` is a plain action.
//! 4. The result loads the architecture, compares it with each known one,
//!    and per architecture finds the interval by a balanced binary search
//!    on the syscall number (with short `JEQ` chains for single numbers),
//!    whose leaves return or run the residual. A conditional jump reaches
//!    255 instructions at most: a farther target is reached through a
//!    `JA` (or a copy of the `RET`) right after the jump.
//!
//! Residual programs are built as a hash-consed graph, so identical ones
//! (the `clone` flags check of x86_64 and i386, say) are emitted once.
//!
//! Whatever the abstraction cannot follow soundly (arithmetic on the
//! syscall number or the architecture, comparing either with `X`, a
//! `JSET` on the number, an unknown opcode) makes [`specialize`] give the
//! program back unchanged, as does a result that is not shorter.
//!
//! The result is checked before it is used, since a bug here would
//! silently weaken a container's filter (the agent specializes every
//! profile it is given, tenants' too). [`specialize`] gives it back only
//! if [`agree`] finds it returning the same action as the program for
//! every case derived from the constants either compares `seccomp_data`
//! with (see [`crate::agreement`]): every architecture either compares
//! with and one neither knows; per architecture, every syscall number
//! either compares with, the numbers either side, 0 and `u32::MAX` (and
//! each with the x32 bit flipped, where it tells x32 apart); where either
//! reads an argument or the instruction pointer, values around each
//! constant they compare it with (and each bit of a mask), each field
//! alone and each pair of fields together; elsewhere, all zero, all ones
//! and the top bits set. A result that decides any of them otherwise, or
//! that needs more than [`CASE_LIMIT`](crate::agreement::CASE_LIMIT)
//! cases, is dropped: the program comes back unchanged, as strict, only
//! slower to attach. For Docker's profile the check tries about 4500
//! cases, in 8 ms unoptimized and 1 ms optimized.

use std::collections::HashMap;

use libc::sock_filter;

use thiserror::Error;

use crate::agreement::{agree, Unconfirmed};
use crate::bpf::*;
use crate::SeccompProgram;

/// The kernel's limit on a program's length (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;
/// How many instructions all the evaluations together may step through
/// before the specialization gives up (Docker's profile takes about
/// 30 000).
const STEP_BUDGET: usize = 1 << 22;
/// How many graph nodes the whole specialization may build.
const NODE_BUDGET: usize = 1 << 20;

/// Returns a program that decides exactly as `program` does for every
/// `seccomp_data`, specialized per architecture and syscall range (see the
/// module's documentation), or `program` itself when it cannot be
/// specialized soundly, the result would not be shorter, or the result
/// fails the check against `program` ([`agree`]).
///
/// ```
/// use berth_seccomp::{specialize, Layout, SeccompFilter};
/// use oci_spec::runtime::LinuxSeccomp;
///
/// let spec: LinuxSeccomp = serde_json::from_value(serde_json::json!({
///     "defaultAction": "SCMP_ACT_ERRNO",
///     "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
///     "syscalls": [
///         {"names": ["read", "write", "close", "fstat", "lseek", "mmap",
///                    "mprotect", "munmap", "brk", "exit", "exit_group"],
///          "action": "SCMP_ACT_ALLOW"}
///     ]
/// })).unwrap();
/// let tree = SeccompFilter::check(&spec)
///     .unwrap()
///     .compile_as(Layout::BinaryTree)
///     .unwrap();
/// assert!(specialize(&tree).len() <= tree.len());
/// ```
pub fn specialize(program: &SeccompProgram) -> SeccompProgram {
    specialized(program).unwrap_or_else(|_| program.clone())
}

/// Why [`specialized`] gave no program.
#[derive(Debug, Error)]
pub enum NotSpecialized {
    /// The program does what the specialization cannot follow soundly, or
    /// its specialization would not be shorter: it is best as it is.
    #[error("the program cannot be specialized into a shorter one")]
    Unchanged,
    /// The specialization failed its check against the program: a
    /// disagreement is a bug in the specialization (worth a report).
    #[error("the specialized program failed its check: {0}")]
    Unconfirmed(#[from] Unconfirmed),
}

/// [`specialize`], saying why not where it gives `program` back.
///
/// ```
/// use berth_seccomp::{specialized, Layout, NotSpecialized, SeccompFilter};
/// use oci_spec::runtime::LinuxSeccomp;
///
/// let spec: LinuxSeccomp = serde_json::from_value(serde_json::json!({
///     "defaultAction": "SCMP_ACT_ALLOW",
///     "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
///     "syscalls": [{"names": ["reboot", "kexec_load"], "action": "SCMP_ACT_ERRNO"}]
/// })).unwrap();
/// let tree = SeccompFilter::check(&spec)
///     .unwrap()
///     .compile_as(Layout::BinaryTree)
///     .unwrap();
/// let shorter = specialized(&tree).unwrap();
/// assert!(shorter.len() < tree.len());
/// // What is specialized already gets no shorter.
/// assert!(matches!(specialized(&shorter), Err(NotSpecialized::Unchanged)));
/// ```
pub fn specialized(program: &SeccompProgram) -> Result<SeccompProgram, NotSpecialized> {
    checked(program, try_specialize)
}

/// What `specialization` makes of `program`, if that is shorter and
/// [`agree`]s with `program`.
fn checked(
    program: &SeccompProgram,
    specialization: impl FnOnce(&[sock_filter]) -> Option<Vec<sock_filter>>,
) -> Result<SeccompProgram, NotSpecialized> {
    match specialization(&program.instructions) {
        Some(instructions) if instructions.len() < program.len() => {
            let specialized = SeccompProgram { instructions };
            agree(program, &specialized)?;
            Ok(specialized)
        }
        _ => Err(NotSpecialized::Unchanged),
    }
}

/// Why an evaluation stopped before it built its residual program.
#[derive(Debug)]
enum Stop {
    /// The syscall interval must be split before these numbers (each
    /// starts a new interval).
    Split(Vec<u32>),
    /// The program compares the architecture with a value not yet among
    /// the architecture classes.
    NewArch(u32),
    /// Something the abstraction cannot follow soundly.
    Fallback,
}

/// What the abstraction knows of a register or scratch word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Val {
    /// This value.
    Const(u32),
    /// The syscall number, somewhere in the interval being evaluated
    /// (never a single number: that is a `Const`).
    Nr,
    /// The architecture, none of the known ones.
    Arch,
    /// The `seccomp_data` word at this offset (an argument or the
    /// instruction pointer), which the runtime register holds.
    Word(u32),
    /// Some other value computed from unknown data, which the runtime
    /// register holds.
    Opaque,
    /// A scratch word never stored to.
    Unset,
}

impl Val {
    /// Whether the value is only known at runtime: the emitted program
    /// keeps it in the runtime register.
    fn unknown(self) -> bool {
        matches!(self, Val::Word(_) | Val::Opaque)
    }
}

/// The abstract machine: the accumulator, the index register and the
/// scratch memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct State {
    a: Val,
    x: Val,
    m: [Val; 16],
}

/// The architecture an evaluation is for.
#[derive(Clone, Copy)]
enum Class<'a> {
    /// Exactly this one.
    Is(u32),
    /// None of these.
    Other(&'a [u32]),
}

/// A node of a (residual) program: an instruction and what follows it.
/// Its meaning depends only on the registers it reads before writing
/// them, so equal nodes are one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Node {
    Ret(u32),
    RetA,
    /// A load, store, ALU or register move, then `next`.
    Op {
        code: u16,
        k: u32,
        next: usize,
    },
    /// A conditional jump.
    Branch {
        code: u16,
        k: u32,
        t: usize,
        f: usize,
    },
}

/// Liveness bits: the accumulator, the index register, scratch word `i`.
const LIVE_A: u32 = 1;
const LIVE_X: u32 = 2;
fn live_m(i: u32) -> u32 {
    4 << i
}

/// The registers an operation reads and writes, and whether it may be
/// dropped when nothing reads what it writes (a division by a zero `X`
/// ends the program, so it may not).
fn reads_writes(code: u16, k: u32) -> (u32, u32, bool) {
    match code & 0x07 {
        LD if code & MODE == MEM => (live_m(k), LIVE_A, true),
        LD => (0, LIVE_A, true),
        LDX if code & MODE == MEM => (live_m(k), LIVE_X, true),
        LDX => (0, LIVE_X, true),
        ST => (LIVE_A, live_m(k), true),
        STX => (LIVE_X, live_m(k), true),
        ALU if code & OP == NEG => (LIVE_A, LIVE_A, true),
        ALU if code & SRC_X != 0 => (LIVE_A | LIVE_X, LIVE_A, !matches!(code & OP, DIV | MOD)),
        ALU => (LIVE_A, LIVE_A, true),
        MISC if code & 0xf8 == TXA => (LIVE_X, LIVE_A, true),
        _ => (LIVE_A, LIVE_X, true), // TAX
    }
}

/// Residual programs, hash-consed, with the registers each node reads
/// before writing them.
#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    live: Vec<u32>,
    ids: HashMap<Node, usize>,
}

impl Graph {
    fn add(&mut self, node: Node) -> Result<usize, Stop> {
        if let Some(&id) = self.ids.get(&node) {
            return Ok(id);
        }
        if self.nodes.len() >= NODE_BUDGET {
            return Err(Stop::Fallback);
        }
        let live = match node {
            Node::Ret(_) => 0,
            Node::RetA => LIVE_A,
            Node::Op { code, k, next } => {
                let (reads, writes, _) = reads_writes(code, k);
                reads | (self.live[next] & !writes)
            }
            Node::Branch { code, t, f, .. } => {
                let x = if code & SRC_X != 0 { LIVE_X } else { 0 };
                LIVE_A | x | self.live[t] | self.live[f]
            }
        };
        let id = self.nodes.len();
        self.nodes.push(node);
        self.live.push(live);
        self.ids.insert(node, id);
        Ok(id)
    }

    /// `code k` then `next`; nothing but `next` if what it writes is
    /// never read.
    fn op(&mut self, (code, k): (u16, u32), next: usize) -> Result<usize, Stop> {
        let (_, writes, droppable) = reads_writes(code, k);
        if droppable && self.live[next] & writes == 0 {
            return Ok(next);
        }
        self.add(Node::Op { code, k, next })
    }

    fn branch(&mut self, code: u16, k: u32, t: usize, f: usize) -> Result<usize, Stop> {
        if t == f {
            return Ok(t);
        }
        self.add(Node::Branch { code, k, t, f })
    }
}

/// How a straight run of instructions ends.
enum End {
    Ret(Val),
    /// A conditional jump on unknown data, to keep.
    Branch {
        code: u16,
        k: u32,
        t: usize,
        f: usize,
        state: State,
    },
}

/// One evaluation: the program for one architecture class and one
/// interval of syscall numbers.
struct Eval<'a> {
    program: &'a [sock_filter],
    class: Class<'a>,
    lo: u32,
    hi: u32,
    /// What is left of [`STEP_BUDGET`].
    steps_left: usize,
}

impl Eval<'_> {
    /// What loading `seccomp_data` at `offset` gives.
    fn load(&self, offset: u32) -> Val {
        match (offset, self.class) {
            (NR, _) if self.lo == self.hi => Val::Const(self.lo),
            (NR, _) => Val::Nr,
            (ARCH, Class::Is(arch)) => Val::Const(arch),
            (ARCH, Class::Other(_)) => Val::Arch,
            _ => Val::Word(offset),
        }
    }

    /// Decides a comparison of the syscall number (in `lo..=hi`, not one
    /// number) with `k`, or says where to split the interval.
    fn compare_nr(&self, op: u16, k: u32) -> Result<bool, Stop> {
        let (lo, hi) = (self.lo, self.hi);
        match op {
            JEQ if k < lo || k > hi => Ok(false),
            JEQ => Err(Stop::Split(
                k.checked_add(1).into_iter().chain([k]).collect(),
            )),
            JGT if lo > k => Ok(true),
            JGT if hi <= k => Ok(false),
            JGT => Err(Stop::Split(vec![k + 1])),
            JGE if lo >= k => Ok(true),
            JGE if hi < k => Ok(false),
            JGE => Err(Stop::Split(vec![k])),
            _ => Err(Stop::Fallback),
        }
    }

    /// Decides a comparison of an architecture that is none of the known
    /// ones with `k`.
    fn compare_arch(&self, op: u16, k: u32) -> Result<bool, Stop> {
        match (op, self.class) {
            (JEQ, Class::Other(known)) if known.contains(&k) => Ok(false),
            (JEQ, _) => Err(Stop::NewArch(k)),
            _ => Err(Stop::Fallback),
        }
    }

    /// Runs from `pc` until a return or a jump on unknown data, resolving
    /// everything else; returns the operations to emit on the way.
    fn walk(&mut self, mut pc: usize, mut s: State) -> Result<(Vec<(u16, u32)>, End), Stop> {
        let mut ops = Vec::new();
        loop {
            self.steps_left = self.steps_left.checked_sub(1).ok_or(Stop::Fallback)?;
            let insn = self.program.get(pc).ok_or(Stop::Fallback)?;
            let (code, k) = (insn.code, insn.k);
            pc += 1;
            match code & 0x07 {
                LD | LDX if code & SIZE != W => return Err(Stop::Fallback),
                LD | LDX => {
                    let to_x = code & 0x07 == LDX;
                    let v = match code & MODE {
                        ABS if !to_x && k % 4 == 0 && k < DATA_LEN => self.load(k),
                        IMM => Val::Const(k),
                        LEN => Val::Const(DATA_LEN),
                        MEM if k < 16 => s.m[k as usize],
                        _ => return Err(Stop::Fallback),
                    };
                    if v == Val::Unset {
                        return Err(Stop::Fallback);
                    }
                    let reg = if to_x { &mut s.x } else { &mut s.a };
                    // A word the register already holds need not be
                    // loaded again.
                    if v.unknown() && !(matches!(v, Val::Word(_)) && *reg == v) {
                        ops.push((code, k));
                    }
                    *reg = v;
                }
                ST | STX => {
                    if k >= 16 {
                        return Err(Stop::Fallback);
                    }
                    let v = if code & 0x07 == STX { s.x } else { s.a };
                    if v.unknown() {
                        ops.push((code, k));
                    }
                    s.m[k as usize] = v;
                }
                MISC => {
                    let (from, to) = match code & 0xf8 {
                        TAX => (s.a, &mut s.x),
                        TXA => (s.x, &mut s.a),
                        _ => return Err(Stop::Fallback),
                    };
                    if from.unknown() {
                        ops.push((code, k));
                    }
                    *to = from;
                }
                ALU => s.a = self.alu(code, k, &s, &mut ops)?,
                RET => {
                    return match code {
                        c if c == RET => Ok((ops, End::Ret(Val::Const(k)))),
                        c if c == RET | RET_A => Ok((ops, End::Ret(s.a))),
                        _ => Err(Stop::Fallback),
                    };
                }
                _ /* JMP */ => {
                    let op = code & OP;
                    if op == JA {
                        pc = pc.checked_add(k as usize).ok_or(Stop::Fallback)?;
                        continue;
                    }
                    let (t, f) = (pc + insn.jt as usize, pc + insn.jf as usize);
                    let b = if code & SRC_X != 0 { s.x } else { Val::Const(k) };
                    let taken = match (s.a, b) {
                        (Val::Const(a), Val::Const(b)) => {
                            compare(op, a, b).ok_or(Stop::Fallback)?
                        }
                        (Val::Nr, Val::Const(b)) => self.compare_nr(op, b)?,
                        (Val::Arch, Val::Const(b)) => self.compare_arch(op, b)?,
                        (a, Val::Const(b)) if a.unknown() => {
                            compare(op, 0, 0).ok_or(Stop::Fallback)?;
                            let end = End::Branch { code: JMP | op, k: b, t, f, state: s };
                            return Ok((ops, end));
                        }
                        (a, b) if b.unknown() && (a.unknown() || matches!(a, Val::Const(_))) => {
                            compare(op, 0, 0).ok_or(Stop::Fallback)?;
                            if let Val::Const(a) = a {
                                // The runtime accumulator must hold it.
                                ops.push((LD | W | IMM, a));
                            }
                            let end = End::Branch { code: JMP | op | SRC_X, k: 0, t, f, state: s };
                            return Ok((ops, end));
                        }
                        _ => return Err(Stop::Fallback),
                    };
                    pc = if taken { t } else { f };
                }
            }
        }
    }

    /// The accumulator after the ALU instruction `code k`.
    fn alu(&self, code: u16, k: u32, s: &State, ops: &mut Vec<(u16, u32)>) -> Result<Val, Stop> {
        let op = code & OP;
        if !matches!(op, ADD | SUB | MUL | DIV | OR | AND | LSH | RSH | NEG | XOR) {
            return Err(Stop::Fallback);
        }
        if op == NEG {
            return match s.a {
                Val::Const(a) => Ok(Val::Const(a.wrapping_neg())),
                a if a.unknown() => {
                    ops.push((code, k));
                    Ok(Val::Opaque)
                }
                _ => Err(Stop::Fallback),
            };
        }
        let b = if code & SRC_X != 0 {
            s.x
        } else {
            Val::Const(k)
        };
        match (s.a, b) {
            (Val::Const(a), Val::Const(b)) => alu(op, a, b).map(Val::Const).ok_or(Stop::Fallback),
            (a, Val::Const(b)) if a.unknown() => {
                // As the K form (a division by zero or a long shift is
                // left to the original program).
                alu(op, 0, b).ok_or(Stop::Fallback)?;
                Ok(match (op, b) {
                    (AND | MUL, 0) => Val::Const(0),
                    (OR, u32::MAX) => Val::Const(u32::MAX),
                    (ADD | SUB | OR | XOR | LSH | RSH, 0) | (AND, u32::MAX) | (MUL | DIV, 1) => a,
                    _ => {
                        ops.push((ALU | op, b));
                        Val::Opaque
                    }
                })
            }
            (a, b) if b.unknown() && (a.unknown() || matches!(a, Val::Const(_))) => {
                if let Val::Const(a) = a {
                    ops.push((LD | W | IMM, a));
                }
                ops.push((ALU | op | SRC_X, 0));
                Ok(Val::Opaque)
            }
            _ => Err(Stop::Fallback),
        }
    }

    /// The residual program of the whole program over this evaluation's
    /// class and interval.
    fn run(&mut self, graph: &mut Graph) -> Result<usize, Stop> {
        /// A point of the evaluation: a pc and (the index of) a state.
        type Key = (usize, usize);
        enum Task {
            Visit(Key),
            /// Builds the node of `key` once its branch's are built.
            Finish {
                key: Key,
                ops: Vec<(u16, u32)>,
                code: u16,
                k: u32,
                t: Key,
                f: Key,
            },
        }
        /// The evaluation's states, each once.
        #[derive(Default)]
        struct States {
            all: Vec<State>,
            ids: HashMap<State, usize>,
        }
        impl States {
            fn id(&mut self, state: State) -> usize {
                *self.ids.entry(state).or_insert_with(|| {
                    self.all.push(state);
                    self.all.len() - 1
                })
            }
        }
        let mut states = States::default();
        let root = (
            0,
            states.id(State {
                // The kernel clears A and X before a classic program.
                a: Val::Const(0),
                x: Val::Const(0),
                m: [Val::Unset; 16],
            }),
        );
        let mut done: HashMap<Key, usize> = HashMap::new();
        let mut tasks = vec![Task::Visit(root)];
        // Children are finished before their parent: each jump goes
        // forward, so no task waits on itself.
        while let Some(task) = tasks.pop() {
            let (key, ops, mut id) = match task {
                Task::Visit(key) if done.contains_key(&key) => continue,
                Task::Visit(key) => match self.walk(key.0, states.all[key.1])? {
                    (ops, End::Ret(Val::Const(k))) => (key, ops, graph.add(Node::Ret(k))?),
                    (ops, End::Ret(a)) if a.unknown() => (key, ops, graph.add(Node::RetA)?),
                    (_, End::Ret(_)) => return Err(Stop::Fallback),
                    (
                        ops,
                        End::Branch {
                            code,
                            k,
                            t,
                            f,
                            state,
                        },
                    ) => {
                        let state = states.id(state);
                        let (t, f) = ((t, state), (f, state));
                        tasks.push(Task::Finish {
                            key,
                            ops,
                            code,
                            k,
                            t,
                            f,
                        });
                        tasks.push(Task::Visit(f));
                        tasks.push(Task::Visit(t));
                        continue;
                    }
                },
                Task::Finish {
                    key,
                    ops,
                    code,
                    k,
                    t,
                    f,
                } => (key, ops, graph.branch(code, k, done[&t], done[&f])?),
            };
            for &op in ops.iter().rev() {
                id = graph.op(op, id)?;
            }
            done.insert(key, id);
        }
        let id = done[&root];
        // The residual reads no register it did not set itself.
        if graph.live[id] != 0 {
            return Err(Stop::Fallback);
        }
        Ok(id)
    }
}

/// The syscall number intervals of one architecture class, each as its
/// first number and its residual program, adjacent equal ones merged.
fn partition(
    program: &[sock_filter],
    class: Class,
    graph: &mut Graph,
    steps_left: &mut usize,
) -> Result<Vec<(u32, usize)>, Stop> {
    let mut work = vec![(0, u32::MAX)];
    let mut done = Vec::new();
    while let Some((lo, hi)) = work.pop() {
        let mut eval = Eval {
            program,
            class,
            lo,
            hi,
            steps_left: *steps_left,
        };
        let result = eval.run(graph);
        *steps_left = eval.steps_left;
        match result {
            Ok(id) => done.push((lo, id)),
            Err(Stop::Split(mut cuts)) => {
                cuts.retain(|&c| c > lo && c <= hi);
                cuts.sort_unstable();
                cuts.dedup();
                if cuts.is_empty() {
                    return Err(Stop::Fallback);
                }
                let mut from = lo;
                for c in cuts {
                    work.push((from, c - 1));
                    from = c;
                }
                work.push((from, hi));
            }
            Err(stop) => return Err(stop),
        }
    }
    done.sort_unstable();
    done.dedup_by(|later, earlier| later.1 == earlier.1);
    Ok(done)
}

/// The most `JEQ`s [`search`] chains: a balanced search through the
/// intervals such a chain replaces would be no shorter.
const CHAIN: usize = 4;

/// A search of `parts` (sorted intervals, each its first number and its
/// program) on the syscall number in the accumulator.
///
/// The intervals are cut into runs where one program (the run's
/// background) holds everywhere but at a few single numbers (at most
/// [`CHAIN`]), each found by a chain of `JEQ`s; a balanced binary search
/// of `JGE`s finds the run. The cut (by dynamic programming over the
/// intervals) makes the fewest instructions.
fn search(graph: &mut Graph, parts: &[(u32, usize)]) -> Result<usize, Stop> {
    let n = parts.len();
    let single = |i: usize| match parts.get(i + 1) {
        Some(next) => next.0 - parts[i].0 == 1,
        None => parts[i].0 == u32::MAX,
    };
    // The background of parts[from..to] and how many JEQs it takes, if
    // it can be a run.
    let run = |from: usize, to: usize| -> Option<(usize, usize)> {
        let wide: Vec<usize> = (from..to)
            .filter(|&i| !single(i))
            .map(|i| parts[i].1)
            .collect();
        let background = match wide.first() {
            Some(&w) if wide.iter().all(|&v| v == w) => w,
            Some(_) => return None,
            None => (from..to)
                .map(|i| parts[i].1)
                .max_by_key(|&p| (from..to).filter(|&i| parts[i].1 == p).count())?,
        };
        let jeqs = (from..to).filter(|&i| parts[i].1 != background).count();
        (jeqs <= CHAIN).then_some((background, jeqs))
    };
    // best[to]: the fewest instructions for parts[..to], and where its
    // last run starts.
    let mut best: Vec<(usize, usize)> = vec![(0, 0)];
    for to in 1..=n {
        let mut choice = (usize::MAX, 0);
        let first = to.saturating_sub(2 * CHAIN + 1);
        for (from, &(before, _)) in best.iter().enumerate().skip(first) {
            if let Some((_, jeqs)) = run(from, to) {
                let cost = before + jeqs + usize::from(from > 0);
                if cost < choice.0 {
                    choice = (cost, from);
                }
            }
        }
        if choice.0 == usize::MAX {
            return Err(Stop::Fallback);
        }
        best.push(choice);
    }
    // The runs, each as its first number and its chain.
    let mut runs = Vec::new();
    let mut to = n;
    while to > 0 {
        let from = best[to].1;
        let (background, _) = run(from, to).ok_or(Stop::Fallback)?;
        let mut chain = background;
        for i in (from..to).rev().filter(|&i| parts[i].1 != background) {
            chain = graph.branch(JMP | JEQ, parts[i].0, parts[i].1, chain)?;
        }
        runs.push((parts[from].0, chain));
        to = from;
    }
    runs.reverse();
    bisect(graph, &runs)
}

/// A balanced binary search of `runs` (sorted, each its first number and
/// its program) on the syscall number in the accumulator.
fn bisect(graph: &mut Graph, runs: &[(u32, usize)]) -> Result<usize, Stop> {
    match runs {
        [] => Err(Stop::Fallback),
        [(_, only)] => Ok(*only),
        _ => {
            let mid = runs.len() / 2;
            let above = bisect(graph, &runs[mid..])?;
            let below = bisect(graph, &runs[..mid])?;
            graph.branch(JMP | JGE, runs[mid].0, above, below)
        }
    }
}

fn try_specialize(program: &[sock_filter]) -> Option<Vec<sock_filter>> {
    let mut graph = Graph::default();
    let mut steps_left = STEP_BUDGET;
    // The architectures, in the order the program first compares them.
    let mut arches: Vec<u32> = Vec::new();
    let other = loop {
        match partition(program, Class::Other(&arches), &mut graph, &mut steps_left) {
            Ok(parts) => break parts,
            Err(Stop::NewArch(k)) if !arches.contains(&k) => arches.push(k),
            Err(_) => return None,
        }
    };
    let mut dispatch = {
        let parts = search(&mut graph, &other).ok()?;
        graph.op((LD | W | ABS, NR), parts).ok()?
    };
    for &arch in arches.iter().rev() {
        let parts = partition(program, Class::Is(arch), &mut graph, &mut steps_left).ok()?;
        let parts = search(&mut graph, &parts).ok()?;
        let tree = graph.op((LD | W | ABS, NR), parts).ok()?;
        dispatch = graph.branch(JMP | JEQ, arch, tree, dispatch).ok()?;
    }
    let root = graph.op((LD | W | ABS, ARCH), dispatch).ok()?;
    let instructions = emit(&graph, root)?;
    (instructions.len() <= MAX_INSNS).then_some(instructions)
}

/// The graph from `root` as a classic BPF program: nodes in reverse
/// post-order (so every jump goes forward, and a node's last child
/// follows it), emitted from the end, with a `JA` (or a copy of the
/// `RET`) after a jump whose target is beyond the 255 a conditional jump
/// can skip.
fn emit(graph: &Graph, root: usize) -> Option<Vec<sock_filter>> {
    let children = |id: usize| -> Vec<usize> {
        match graph.nodes[id] {
            Node::Ret(_) | Node::RetA => vec![],
            Node::Op { next, .. } => vec![next],
            // The false branch visited last: it follows the jump.
            Node::Branch { t, f, .. } => vec![t, f],
        }
    };
    let mut post = Vec::new();
    let mut seen = vec![false; graph.nodes.len()];
    let mut stack = vec![(root, 0)];
    seen[root] = true;
    while let Some((id, i)) = stack.pop() {
        match children(id).get(i) {
            Some(&child) => {
                stack.push((id, i + 1));
                if !seen[child] {
                    seen[child] = true;
                    stack.push((child, 0));
                }
            }
            None => post.push(id),
        }
    }

    // rev[i] is the i-th instruction from the end.
    let mut rev: Vec<sock_filter> = Vec::new();
    let mut at = vec![usize::MAX; graph.nodes.len()];
    let insn = |code: u16, jt: u8, jf: u8, k: u32| sock_filter { code, jt, jf, k };
    // Where to jump to reach `id`: for a return, its nearest copy.
    fn push_ret(rev: &mut Vec<sock_filter>, at: &mut [usize], node: Node, id: usize) {
        let (code, k) = match node {
            Node::Ret(k) => (RET, k),
            _ => (RET | RET_A, 0),
        };
        rev.push(sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        });
        at[id] = rev.len() - 1;
    }
    let is_ret = |id: usize| matches!(graph.nodes[id], Node::Ret(_) | Node::RetA);
    // Pushes a way to `id` (a copy of a return, else a JA) and returns
    // where it is.
    let trampoline = |rev: &mut Vec<sock_filter>, at: &mut [usize], id: usize| {
        if is_ret(id) {
            push_ret(rev, at, graph.nodes[id], id);
        } else {
            let k = u32::try_from(rev.len() - at[id] - 1).unwrap_or(u32::MAX);
            rev.push(insn(JMP | JA, 0, 0, k));
        }
        rev.len() - 1
    };
    for id in post {
        match graph.nodes[id] {
            node @ (Node::Ret(_) | Node::RetA) => push_ret(&mut rev, &mut at, node, id),
            Node::Op { code, k, next } => {
                if at[next] + 1 != rev.len() {
                    trampoline(&mut rev, &mut at, next);
                }
                rev.push(insn(code, 0, 0, k));
                at[id] = rev.len() - 1;
            }
            Node::Branch { code, k, t, f } => {
                let (mut to_t, mut to_f) = (at[t], at[f]);
                let far = |to: usize, from: usize| from - to - 1 > u8::MAX as usize;
                let (mut via_t, mut via_f) = (false, false);
                loop {
                    let from = rev.len() + via_t as usize + via_f as usize;
                    let (t2, f2) = (via_t || far(to_t, from), via_f || far(to_f, from));
                    if (t2, f2) == (via_t, via_f) {
                        break;
                    }
                    (via_t, via_f) = (t2, f2);
                }
                if via_f {
                    to_f = trampoline(&mut rev, &mut at, f);
                }
                if via_t {
                    to_t = trampoline(&mut rev, &mut at, t);
                }
                let from = rev.len();
                let (jt, jf) = (from - to_t - 1, from - to_f - 1);
                rev.push(insn(code, jt as u8, jf as u8, k));
                at[id] = rev.len() - 1;
            }
        }
    }
    if rev.len() > u16::MAX as usize {
        return None;
    }
    rev.reverse();
    Some(rev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::{self, decide_alike, Run, SeccompData};
    use crate::bpf::hand_written::{self, insn, program, ALLOW, KILL, X86_64};

    const I386: u32 = 0x4000_0003;
    const ERRNO: u32 = 0x0005_0001;

    /// How `program` runs for this syscall (the instruction pointer 0).
    fn run(program: &SeccompProgram, nr: u32, arch: u32, args: [u64; 6]) -> Run {
        let data = SeccompData {
            nr,
            arch,
            args,
            ..SeccompData::default()
        };
        agreement::run(program, &data).unwrap()
    }

    /// Asserts that both programs decide alike for each syscall number of
    /// `numbers` on x86_64, i386 and an unknown architecture, with each
    /// argument set to each of `values`.
    fn assert_alike(a: &SeccompProgram, b: &SeccompProgram, numbers: &[u32], values: &[u64]) {
        for arch in [X86_64, I386, 0xdead_beef] {
            for &nr in numbers {
                let mut calls = vec![[0u64; 6]];
                for index in 0..6 {
                    for &v in values {
                        let mut args = [0; 6];
                        args[index] = v;
                        calls.push(args);
                    }
                }
                for args in calls {
                    let data = SeccompData {
                        nr,
                        arch,
                        args,
                        ..SeccompData::default()
                    };
                    if let Err(d) = decide_alike(a, b, &data) {
                        panic!("{d}");
                    }
                }
            }
        }
    }

    /// Even syscall numbers below `end` allowed, the rest refused, each in
    /// a block of its own that loads the number again and checks that
    /// `arg0 & 0 == 0` (always true) before it allows.
    fn evens_after_a_redundant_check(end: u32) -> SeccompProgram {
        let mut body = Vec::new();
        for nr in (0..end).step_by(2) {
            body.extend([
                insn(LD | W | ABS, 0, 0, NR),
                insn(JMP | JEQ, 0, 4, nr),
                insn(LD | W | ABS, 0, 0, 16),
                insn(ALU | AND, 0, 0, 0),
                insn(JMP | JEQ, 0, 1, 0),
                insn(RET, 0, 0, ALLOW),
            ]);
        }
        body.push(insn(RET, 0, 0, ERRNO));
        on_x86_64(body)
    }

    /// `ld arch; jeq x86_64 or kill; ld nr`, then `body`.
    fn on_x86_64(body: Vec<sock_filter>) -> SeccompProgram {
        let load_nr = insn(LD | W | ABS, 0, 0, NR);
        hand_written::on_x86_64([load_nr].into_iter().chain(body).collect())
    }

    #[test]
    fn arithmetic_on_the_syscall_number_leaves_the_program_as_it_is() {
        for body in [
            // nr & 0xff == 5
            vec![
                insn(ALU | AND, 0, 0, 0xff),
                insn(JMP | JEQ, 0, 1, 5),
                insn(RET, 0, 0, ERRNO),
                insn(RET, 0, 0, ALLOW),
            ],
            // nr & 4
            vec![
                insn(JMP | JSET, 0, 1, 4),
                insn(RET, 0, 0, ERRNO),
                insn(RET, 0, 0, ALLOW),
            ],
            // nr == arg0
            vec![
                insn(MISC | TAX, 0, 0, 0),
                insn(LD | W | ABS, 0, 0, 16),
                insn(JMP | JEQ | SRC_X, 0, 1, 0),
                insn(RET, 0, 0, ERRNO),
                insn(RET, 0, 0, ALLOW),
            ],
        ] {
            let original = on_x86_64(body);
            assert_eq!(specialize(&original), original);
        }
    }

    /// A specialization that decides otherwise than the program, as a bug
    /// in it could make, fails the check: the program comes back as it
    /// is.
    #[test]
    fn a_specialization_that_disagrees_is_not_used() {
        // Even numbers below 20 allowed, each after a redundant argument
        // check.
        let original = evens_after_a_redundant_check(20);
        let specialized = checked(&original, try_specialize).unwrap();
        assert!(specialized.len() < original.len(), "{specialized:?}");
        assert_eq!(specialized, specialize(&original));

        // One return answering otherwise, as long as the specialization.
        let mut changed = specialized.instructions.clone();
        let last = changed.iter_mut().rev().find(|i| i.code == RET).unwrap();
        last.k ^= 1;
        assert!(matches!(
            checked(&original, |_| Some(changed)),
            Err(NotSpecialized::Unconfirmed(Unconfirmed::Disagree(_)))
        ));
        // One jump of the search going the other way.
        let mut swapped = specialized.instructions.clone();
        let jump = swapped.iter_mut().find(|i| i.code == JMP | JGE).unwrap();
        (jump.jt, jump.jf) = (jump.jf, jump.jt);
        assert!(matches!(
            checked(&original, |_| Some(swapped)),
            Err(NotSpecialized::Unconfirmed(Unconfirmed::Disagree(_)))
        ));
    }

    #[test]
    fn a_program_already_minimal_comes_back_as_it_is() {
        let one = program(vec![insn(RET, 0, 0, ALLOW)]);
        assert_eq!(specialize(&one), one);
        let execve = on_x86_64(vec![
            insn(JMP | JEQ, 0, 1, 59),
            insn(RET, 0, 0, ERRNO),
            insn(RET, 0, 0, ALLOW),
        ]);
        assert_eq!(specialize(&execve), execve);
        // What it would have been: as long.
        let again = try_specialize(&execve.instructions).unwrap();
        assert_eq!(again.len(), execve.len());
        assert_alike(&program(again), &execve, &[0, 58, 59, 60, u32::MAX], &[0]);
    }

    /// Even numbers below 1200 allowed, after an argument check that
    /// always holds (`arg0 & 0 == 0`), each in a block of its own that
    /// loads the number again: 3605 instructions that specialize to a
    /// search of 1199 intervals, too wide for conditional jumps alone.
    #[test]
    fn a_search_too_wide_for_conditional_jumps_goes_through_ja() {
        let original = evens_after_a_redundant_check(1200);
        let specialized = specialize(&original);
        assert!(
            specialized.len() < original.len() / 2,
            "{specialized:?} of {original:?}"
        );
        assert!(specialized
            .instructions
            .iter()
            .any(|i| i.code == JMP | JA && i.k > 0));
        // Each conditional jump that could not reach went through a JA.
        // arch, nr, 8 JGEs to one of 150 runs, 4 JEQs, a few JAs, RET.
        let longest = (0..1300).map(|nr| run(&specialized, nr, X86_64, [0; 6]).steps);
        let longest = longest.max().unwrap();
        assert!(longest <= 20, "{longest}");
        let numbers: Vec<u32> = (0..1300).chain([u32::MAX - 1, u32::MAX]).collect();
        assert_alike(&specialized, &original, &numbers, &[0, 1, u64::MAX]);
    }

    /// The number kept in scratch memory and X, the architecture compared
    /// twice, an argument compared with X, a return of A: all followed.
    #[test]
    fn registers_and_scratch_memory_are_followed() {
        let original = program(vec![
            insn(LD | W | ABS, 0, 0, ARCH),   // 0
            insn(ST, 0, 0, 3),                // 1
            insn(LD | W | ABS, 0, 0, NR),     // 2
            insn(MISC | TAX, 0, 0, 0),        // 3
            insn(ST, 0, 0, 0),                // 4
            insn(LD | MEM, 0, 0, 3),          // 5
            insn(JMP | JEQ, 0, 13, X86_64),   // 6 -> 7 / 20
            insn(MISC | TXA, 0, 0, 0),        // 7: A = nr
            insn(JMP | JGT, 0, 8, 100),       // 8 -> 9 / 17
            insn(LD | W | ABS, 0, 0, 20),     // 9: arg0 high
            insn(ST, 0, 0, 1),                // 10
            insn(LD | MEM, 0, 0, 0),          // 11: nr again
            insn(JMP | JGE, 0, 3, 200),       // 12 -> 13 / 16
            insn(LD | MEM, 0, 0, 1),          // 13: arg0 high
            insn(ALU | ADD, 0, 0, 2),         // 14
            insn(RET | RET_A, 0, 0, 0),       // 15
            insn(RET, 0, 0, ERRNO),           // 16
            insn(LDX | W | IMM, 0, 0, 7),     // 17
            insn(LD | W | ABS, 0, 0, 16),     // 18: arg0
            insn(JMP | JGT | SRC_X, 2, 3, 0), // 19 -> 22 / 23
            insn(JMP | JEQ, 0, 1, I386),      // 20 -> 21 / 22
            insn(RET, 0, 0, ERRNO),           // 21
            insn(RET, 0, 0, ALLOW),           // 22
            insn(RET, 0, 0, KILL),            // 23
        ]);
        let specialized = try_specialize(&original.instructions).map(program);
        let specialized = specialized.expect("specializes");
        let numbers: Vec<u32> = (0..300).chain([u32::MAX]).collect();
        let values = [0, 6, 7, 8, 1 << 32, 5 << 32, u64::MAX];
        assert_alike(&specialized, &original, &numbers, &values);
    }

    /// Random programs of the instructions seccomp takes (forward jumps,
    /// a return last) decide alike specialized, whatever the
    /// specialization made of them: followed, or given back.
    #[test]
    fn random_programs_decide_alike_specialized() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        let constants = [0, 1, 2, 3, 5, 59, 60, X86_64, I386, u32::MAX];
        let offsets = [NR, NR, NR, ARCH, ARCH, 16, 20, 24, 8];
        let alu_ops = [ADD, SUB, AND, OR, XOR, RSH, LSH, MUL];
        let actions = [KILL, ALLOW, ERRNO, ERRNO + 1];
        let values = [0, 1, 2, 5, 59, 1 << 32, u64::MAX];
        let numbers: Vec<u32> = (0..8).chain([58, 59, 60, 61, u32::MAX]).collect();
        let (mut followed, mut total) = (0, 0);
        for _ in 0..3000 {
            let len = 8 + next(40);
            let mut instructions = Vec::new();
            for pc in 0..len - 1 {
                let reach = (len - pc - 2).min(255);
                let jump = |next: &mut dyn FnMut(usize) -> usize| next(reach + 1) as u8;
                let k = constants[next(constants.len())];
                let i = match next(20) {
                    0..=3 => insn(LD | W | ABS, 0, 0, offsets[next(offsets.len())]),
                    4 => insn(LD | W | IMM, 0, 0, k),
                    5 => insn(LDX | W | IMM, 0, 0, k),
                    6 => insn(ST, 0, 0, next(3) as u32),
                    7 => insn(LD | MEM, 0, 0, next(3) as u32),
                    8 => insn(MISC | [TAX, TXA][next(2)], 0, 0, 0),
                    9 => insn(ALU | alu_ops[next(alu_ops.len())], 0, 0, next(3) as u32),
                    10 => insn(RET, 0, 0, actions[next(actions.len())]),
                    11 => insn(RET | RET_A, 0, 0, 0),
                    12 if reach > 0 => insn(JMP | JA, 0, 0, next(reach + 1) as u32),
                    13 => {
                        let op = [JEQ, JGT, JGE, JSET][next(4)];
                        insn(JMP | op | SRC_X, jump(&mut next), jump(&mut next), 0)
                    }
                    _ => {
                        let op = [JEQ, JEQ, JGT, JGE][next(4)];
                        insn(JMP | op, jump(&mut next), jump(&mut next), k)
                    }
                };
                instructions.push(i);
            }
            instructions.push(insn(RET, 0, 0, actions[next(actions.len())]));
            let original = program(instructions);
            total += 1;
            let Some(specialized) = try_specialize(&original.instructions) else {
                continue;
            };
            followed += 1;
            let specialized = program(specialized);
            for arch in [X86_64, I386, 0, 0xdead_beef] {
                for &nr in &numbers {
                    for index in [0, 1] {
                        for &v in &values {
                            let mut data = SeccompData {
                                nr,
                                arch,
                                ..SeccompData::default()
                            };
                            data.args[index] = v;
                            if let Err(d) = decide_alike(&original, &specialized, &data) {
                                panic!(
                                    "{d}\n{:?}\n{:?}",
                                    original.instructions, specialized.instructions
                                );
                            }
                        }
                    }
                }
            }
            // Nor does the check specialize makes find them apart.
            if let Err(e) = agreement::agree(&original, &specialized) {
                panic!(
                    "{e}\n{:?}\n{:?}",
                    original.instructions, specialized.instructions
                );
            }
        }
        // Most are followed, not given back.
        assert!(followed * 2 > total, "{followed} of {total}");
    }
}
