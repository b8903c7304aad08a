//! Whether two seccomp programs decide alike, tried on every case derived
//! from the constants they compare `seccomp_data` with.
//!
//! A filter reads the syscall's number, its architecture, its instruction
//! pointer and its six arguments, and (as libseccomp compiles one)
//! compares each word it reads with constants. Between two consecutive
//! constants a comparison cannot tell values apart, so trying each
//! constant and the values either side of it tries every outcome of every
//! comparison. [`agree`] runs both programs on these cases:
//!
//! 1. **Architectures**: each constant either program compares `arch`
//!    with, the values either side, and 0, 1, `u32::MAX - 1` and
//!    `u32::MAX` (so architectures neither program knows are among them).
//! 2. **Syscall numbers**, per architecture: the same of the constants
//!    either program compares `nr` with when it runs for that
//!    architecture; where those include the x32 bit (`0x4000_0000`), each
//!    number also with that bit flipped.
//! 3. **Arguments**, per architecture and number: first all zero. A run
//!    does the same until it first loads an argument or the instruction
//!    pointer, whatever they hold; so if neither program loaded one, no
//!    argument can change either's decision. Even so, two patterns more
//!    are tried (every field all ones; every field with the top bit of
//!    each half set), which would catch a program reading them anyway.
//! 4. Where either program loaded one, per 64-bit field either may read
//!    there: each value of its low half (0; the constants either program
//!    compares it with or masks it with, and the values either side; each
//!    single bit of those masks) with each of its high half (the same,
//!    and `u32::MAX`). Each field alone, the others zero, and each pair
//!    of fields, each value of one with each of the other.
//!
//! Which constants a program compares a word with is found by following
//! the words through its registers and scratch memory, with the
//! architecture (for 2.) or the architecture and the number (for 4.)
//! known, so that only the comparisons that can run for them count.
//!
//! So every architecture and every syscall number is tried, in effect:
//! programs that compare them only with constants (as the specialized
//! program and libseccomp's do; a specialization that does otherwise is
//! not made) cannot tell apart the values between those tried. Argument
//! conditions are tried alone and two at a time; a masked one with each
//! bit of its mask alone.

use std::collections::BTreeMap;

use libc::sock_filter;
use thiserror::Error;

use crate::bpf::*;
use crate::SeccompProgram;

mod interpret;
use interpret::{first_word, halves, run_words, whole, SLOTS};
pub use interpret::{longest_path, run, Fault, Run, SeccompData};

/// x32 syscall numbers are x86_64's (`AUDIT_ARCH_X86_64`) with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Besides all zero, the arguments (every field alike) tried where
/// neither program reads them.
const PATTERNS: [u64; 2] = [u64::MAX, 0x8000_0000_8000_0000];

/// The most cases [`agree`] tries (Docker's profile takes about 4500).
/// Programs with more (thousands of 64-bit constants on a syscall's
/// arguments) are not known to agree.
pub const CASE_LIMIT: usize = 1 << 18;

/// A case two programs decide differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    /// The syscall: architecture, number, arguments.
    pub data: SeccompData,
    /// What the first program returned for it.
    pub first: Result<u32, Fault>,
    /// What the second program returned for it.
    pub second: Result<u32, Fault>,
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SeccompData {
            nr,
            arch,
            instruction_pointer,
            args,
        } = self.data;
        let action = |result: &Result<u32, Fault>| match result {
            Ok(action) => format!("returns {action:#x}"),
            Err(fault) => format!("fails: {fault}"),
        };
        let args: Vec<String> = args.iter().map(|a| format!("{a:#x}")).collect();
        write!(
            f,
            "arch {arch:#x} nr {nr:#x} args [{}] instruction pointer \
             {instruction_pointer:#x}: the first program {}, the second {}",
            args.join(", "),
            action(&self.first),
            action(&self.second)
        )
    }
}

impl std::error::Error for Disagreement {}

/// Why [`agree`] does not vouch for two programs.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Unconfirmed {
    /// The programs decide this case differently.
    #[error("the programs disagree: {0}")]
    Disagree(#[from] Disagreement),
    /// There are more than [`CASE_LIMIT`] cases to try (the check stopped
    /// before those past it).
    #[error("more than {CASE_LIMIT} cases to try")]
    TooManyCases,
}

/// Whether `first` and `second` return the same action on every case
/// derived from the constants they compare `seccomp_data` with (see the
/// module's documentation): the number of cases tried, or why not. A run
/// that fails ([`Fault`]) agrees with nothing.
pub fn agree(first: &SeccompProgram, second: &SeccompProgram) -> Result<usize, Unconfirmed> {
    let programs = [&first.instructions[..], &second.instructions[..]];
    let mut tried = 0;
    for arch in Constants::following(programs, None, None).architectures() {
        for nr in Constants::following(programs, Some(arch), None).numbers() {
            tried += agree_on(programs, arch, nr, CASE_LIMIT.saturating_sub(tried))?;
        }
    }
    Ok(tried)
}

/// [`agree`] for one architecture and syscall number, in at most `limit`
/// cases: the number of cases tried.
fn agree_on(
    programs: [&[sock_filter]; 2],
    arch: u32,
    nr: u32,
    limit: usize,
) -> Result<usize, Unconfirmed> {
    let zero = SeccompData {
        nr,
        arch,
        ..SeccompData::default()
    };
    let mut cases = vec![zero];
    for pattern in PATTERNS {
        let mut data = zero;
        for slot in 0..SLOTS {
            *data.slot_mut(slot) = pattern;
        }
        cases.push(data);
    }
    let (a, b) = alike(programs, &zero)?;
    if (a.loaded | b.loaded) & !0b11 != 0 {
        let known = Constants::following(programs, Some(arch), Some(nr));
        known.combinations(&zero, &mut cases, limit)?;
    }
    if cases.len() > limit {
        return Err(Unconfirmed::TooManyCases);
    }
    cases.sort_unstable();
    cases.dedup();
    for data in cases.iter().filter(|&data| *data != zero) {
        alike(programs, data)?;
    }
    Ok(cases.len())
}

/// Runs both programs on `data`: their runs, if they return the same
/// action.
pub fn decide_alike(
    first: &SeccompProgram,
    second: &SeccompProgram,
    data: &SeccompData,
) -> Result<(Run, Run), Disagreement> {
    alike([&first.instructions, &second.instructions], data)
}

fn alike(programs: [&[sock_filter]; 2], data: &SeccompData) -> Result<(Run, Run), Disagreement> {
    let words = data.words();
    match (
        run_words(programs[0], &words),
        run_words(programs[1], &words),
    ) {
        (Ok(a), Ok(b)) if a.action == b.action => Ok((a, b)),
        (a, b) => Err(Disagreement {
            data: *data,
            first: a.map(|run| run.action),
            second: b.map(|run| run.action),
        }),
    }
}

/// The constants programs compare the words of `seccomp_data` with (or
/// mask them with), and the words they may load, found by following each
/// word through the accumulator, the index register and scratch memory.
#[derive(Clone, Debug, Default)]
pub struct Constants {
    /// Per word (`nr`, `arch`, then the halves of the instruction pointer
    /// and of the arguments as they lie in memory), its constants.
    words: [Vec<u32>; 16],
    /// Per word, the bits of the masks it is `AND`ed or `JSET` with.
    mask_bits: [u32; 16],
    /// The words the programs may load, a bit per word.
    loads: u16,
}

/// What the following knows of a register or scratch word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Value {
    /// Its value, if the same whatever the unknown words hold.
    known: Option<u32>,
    /// The `seccomp_data` words it may have been computed from.
    from: u16,
}

impl Value {
    const fn constant(k: u32) -> Value {
        Value {
            known: Some(k),
            from: 0,
        }
    }

    /// What a register holds where paths holding `self` and `other` meet.
    fn join(self, other: Value) -> Value {
        Value {
            known: self.known.filter(|_| self.known == other.known),
            from: self.from | other.from,
        }
    }
}

/// The registers and scratch memory, as the following knows them.
#[derive(Clone, Copy, Debug)]
struct State {
    a: Value,
    x: Value,
    m: [Value; 16],
}

impl State {
    fn join(&mut self, other: &State) {
        self.a = self.a.join(other.a);
        self.x = self.x.join(other.x);
        for (m, o) in self.m.iter_mut().zip(other.m) {
            *m = m.join(o);
        }
    }
}

/// 0, 1, `u32::MAX - 1`, `u32::MAX`, and each of `constants` with the
/// values either side: a value of each interval the constants cut `u32`
/// into, and each end of each interval.
fn boundaries(constants: &[u32]) -> Vec<u32> {
    let mut values = vec![0, 1, u32::MAX - 1, u32::MAX];
    for &k in constants {
        values.extend([k.wrapping_sub(1), k, k.wrapping_add(1)]);
    }
    values.sort_unstable();
    values.dedup();
    values
}

impl Constants {
    /// The constants of `program` as a whole (nothing known of the
    /// `seccomp_data`).
    pub fn of(program: &SeccompProgram) -> Constants {
        let mut constants = Constants::default();
        constants.follow(&program.instructions, None, None);
        constants.finish();
        constants
    }

    /// The constants of both programs, knowing the architecture, or the
    /// architecture and the syscall number: of the comparisons that can
    /// run for them.
    fn following(programs: [&[sock_filter]; 2], arch: Option<u32>, nr: Option<u32>) -> Constants {
        let mut constants = Constants::default();
        for program in programs {
            constants.follow(program, arch, nr);
        }
        constants.finish();
        constants
    }

    /// The architectures to try (see the module's documentation).
    pub fn architectures(&self) -> Vec<u32> {
        boundaries(&self.words[1])
    }

    /// The syscall numbers to try (see the module's documentation).
    pub fn numbers(&self) -> Vec<u32> {
        let mut numbers = boundaries(&self.words[0]);
        if self.words[0].binary_search(&X32_SYSCALL_BIT).is_ok() {
            let flipped: Vec<u32> = numbers.iter().map(|n| n ^ X32_SYSCALL_BIT).collect();
            numbers.extend(flipped);
            numbers.sort_unstable();
            numbers.dedup();
        }
        numbers
    }

    /// Argument sets to try (`nr` and `arch` zero): all zero, then each of
    /// the values of each field (see the module's documentation), the
    /// others zero.
    pub fn argument_sets(&self) -> Vec<SeccompData> {
        let mut sets = vec![SeccompData::default()];
        for slot in 0..SLOTS {
            for value in self.values(slot) {
                let mut data = SeccompData::default();
                *data.slot_mut(slot) = value;
                sets.push(data);
            }
        }
        sets
    }

    /// The values to try in word `word`: `base`, its constants and the
    /// values either side, and each bit of its masks alone.
    fn word_values(&self, word: usize, base: &[u32]) -> Vec<u32> {
        let mut values = base.to_vec();
        for &k in &self.words[word] {
            values.extend([k.wrapping_sub(1), k, k.wrapping_add(1)]);
        }
        let bits = self.mask_bits[word];
        values.extend((0..32).map(|b| 1 << b).filter(|bit| bits & bit != 0));
        values.sort_unstable();
        values.dedup();
        values
    }

    /// The values of the halves of 64-bit field `slot` (0 the instruction
    /// pointer, 1 to 6 the arguments) to try, each of one with each of the
    /// other: the low half's (from 0) and the high half's (from 0 and
    /// `u32::MAX`), in the order the halves lie in memory.
    fn halves_values(&self, slot: usize) -> [Vec<u32>; 2] {
        let (first, second) = (first_word(slot), first_word(slot) + 1);
        if halves(1)[0] == 1 {
            // The low half first.
            [
                self.word_values(first, &[0]),
                self.word_values(second, &[0, u32::MAX]),
            ]
        } else {
            [
                self.word_values(first, &[0, u32::MAX]),
                self.word_values(second, &[0]),
            ]
        }
    }

    /// The values to try in 64-bit field `slot`: each of
    /// [`Constants::halves_values`] with each other.
    fn values(&self, slot: usize) -> Vec<u64> {
        let [firsts, seconds] = self.halves_values(slot);
        let mut values = Vec::with_capacity(firsts.len() * seconds.len());
        for &second in &seconds {
            values.extend(firsts.iter().map(|&first| whole([first, second])));
        }
        values
    }

    /// Adds to `cases` those of `base` (its `nr` and `arch`) for the fields
    /// the programs may read: each value of each field alone, and of each
    /// pair of fields together; or fails if they are more than `limit`.
    fn combinations(
        &self,
        base: &SeccompData,
        cases: &mut Vec<SeccompData>,
        limit: usize,
    ) -> Result<(), Unconfirmed> {
        let read: Vec<usize> = (0..SLOTS)
            .filter(|&slot| self.loads & (0b11 << first_word(slot)) != 0)
            .collect();
        // Counted before they are made.
        let counts: Vec<usize> = read
            .iter()
            .map(|&slot| {
                let [firsts, seconds] = self.halves_values(slot);
                firsts.len().saturating_mul(seconds.len())
            })
            .collect();
        let mut total = counts.iter().sum::<usize>();
        for (i, &n) in counts.iter().enumerate() {
            for &m in &counts[i + 1..] {
                total = total.saturating_add(n.saturating_mul(m));
            }
        }
        if total > limit {
            return Err(Unconfirmed::TooManyCases);
        }
        let values: Vec<Vec<u64>> = read.iter().map(|&slot| self.values(slot)).collect();
        for (i, &slot) in read.iter().enumerate() {
            for &v in &values[i] {
                let mut data = *base;
                *data.slot_mut(slot) = v;
                cases.push(data);
                for (j, &other) in read.iter().enumerate().skip(i + 1) {
                    for &w in &values[j] {
                        let mut pair = data;
                        *pair.slot_mut(other) = w;
                        cases.push(pair);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sorts and deduplicates the constants.
    fn finish(&mut self) {
        for constants in &mut self.words {
            constants.sort_unstable();
            constants.dedup();
        }
    }

    /// Records `k`, if known, as a constant of each word of `from`, and
    /// its bits as a mask's if it is one.
    fn record(&mut self, from: u16, k: Option<u32>, mask: bool) {
        let Some(k) = k else { return };
        for word in 0..16 {
            if from & 1 << word != 0 {
                self.words[word].push(k);
                if mask {
                    self.mask_bits[word] |= k;
                }
            }
        }
    }

    /// Adds the constants of `program` run with this architecture and
    /// syscall number, if known: every path that can run for them is
    /// followed, each instruction once with what all the paths reaching
    /// it have in common (every jump goes forward).
    fn follow(&mut self, program: &[sock_filter], arch: Option<u32>, nr: Option<u32>) {
        let start = State {
            // The kernel clears A and X before a classic program.
            a: Value::constant(0),
            x: Value::constant(0),
            m: [Value {
                known: None,
                from: 0,
            }; 16],
        };
        let mut pending = BTreeMap::from([(0usize, start)]);
        while let Some((pc, mut s)) = pending.pop_first() {
            // What the program cannot do, the interpreter reports.
            let Some(&sock_filter { code, jt, jf, k }) = program.get(pc) else {
                continue;
            };
            let mut goto = |to: usize, s: &State| {
                pending
                    .entry(to)
                    .and_modify(|t: &mut State| t.join(s))
                    .or_insert(*s);
            };
            let operand = if code & SRC_X != 0 {
                s.x
            } else {
                Value::constant(k)
            };
            let next = pc + 1;
            match code & CLASS {
                LD | LDX => {
                    let value = match code & MODE {
                        ABS if k.is_multiple_of(4) && k < DATA_LEN => {
                            let word = k / 4;
                            self.loads |= 1 << word;
                            let known = match word {
                                0 => nr,
                                1 => arch,
                                _ => None,
                            };
                            Value {
                                known,
                                from: 1 << word,
                            }
                        }
                        IMM => Value::constant(k),
                        LEN => Value::constant(DATA_LEN),
                        MEM => s.m[k as usize % 16],
                        _ => continue,
                    };
                    *if code & CLASS == LD { &mut s.a } else { &mut s.x } = value;
                    goto(next, &s);
                }
                ST | STX => {
                    s.m[k as usize % 16] = if code & CLASS == ST { s.a } else { s.x };
                    goto(next, &s);
                }
                ALU => {
                    let op = code & OP;
                    if op == AND {
                        self.record(s.a.from, operand.known, true);
                    }
                    let known = match (s.a.known, operand.known) {
                        (Some(a), _) if op == NEG => Some(a.wrapping_neg()),
                        (Some(a), Some(b)) => alu(op, a, b),
                        _ => None,
                    };
                    s.a = Value {
                        known,
                        from: s.a.from | if op == NEG { 0 } else { operand.from },
                    };
                    goto(next, &s);
                }
                JMP if code & OP == JA => goto(next.saturating_add(k as usize), &s),
                JMP => {
                    let (t, f) = (next + usize::from(jt), next + usize::from(jf));
                    match (s.a.known, operand.known) {
                        (Some(a), Some(b)) => {
                            let taken = compare(code & OP, a, b) == Some(true);
                            goto(if taken { t } else { f }, &s);
                        }
                        _ => {
                            let mask = code & OP == JSET;
                            self.record(s.a.from, operand.known, mask);
                            self.record(operand.from, s.a.known, mask);
                            goto(t, &s);
                            goto(f, &s);
                        }
                    }
                }
                MISC if code & 0xf8 == TXA => {
                    s.a = s.x;
                    goto(next, &s);
                }
                MISC => {
                    s.x = s.a;
                    goto(next, &s);
                }
                _ /* RET */ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::hand_written::{insn, on_x86_64, program, ALLOW, KILL, X86_64};
    use crate::{Layout, SeccompFilter};

    /// The offset of the first word of argument `index`, low or high half.
    fn arg(index: u32, high: bool) -> u32 {
        let low_first = cfg!(target_endian = "little");
        16 + 8 * index + if high == low_first { 4 } else { 0 }
    }

    /// A small allow-list with argument conditions (two on one syscall, a
    /// mask), as libseccomp's tree and specialized.
    fn tree_and_specialized() -> (SeccompProgram, SeccompProgram) {
        let spec = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write", "close", "fstat", "lseek", "mmap",
                           "mprotect", "munmap", "brk", "exit", "exit_group"],
                 "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 100, "op": "SCMP_CMP_GT"},
                          {"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                 "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                           "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }))
        .unwrap();
        let filter = SeccompFilter::check(&spec).unwrap();
        let tree = filter.compile_as(Layout::BinaryTree).unwrap();
        let specialized = filter.compile_as(Layout::Specialized).unwrap();
        assert!(specialized.len() < tree.len(), "not specialized");
        (tree, specialized)
    }

    /// Asserts that `agree` finds `corrupted` disagreeing with `tree`, on
    /// a case where the two really decide differently.
    fn assert_caught(tree: &SeccompProgram, corrupted: &SeccompProgram, what: &str) {
        match agree(tree, corrupted) {
            Err(Unconfirmed::Disagree(d)) => {
                let by_tree = run(tree, &d.data).map(|r| r.action);
                let by_corrupted = run(corrupted, &d.data).map(|r| r.action);
                assert_eq!((by_tree, by_corrupted), (d.first, d.second), "{d}");
                assert_ne!(d.first, d.second, "{d}");
            }
            other => panic!("{what}: not caught: {other:?}"),
        }
    }

    #[test]
    fn a_specialized_tree_agrees_with_the_tree() {
        let (tree, specialized) = tree_and_specialized();
        let cases = agree(&tree, &specialized).unwrap();
        assert!(cases > 500, "{cases}");
        assert_eq!(agree(&specialized, &tree), Ok(cases));
        assert!(agree(&tree, &tree).is_ok());
    }

    /// Whichever return of the specialized program answers differently,
    /// some case reaches it.
    #[test]
    fn every_return_changed_is_caught() {
        let (tree, specialized) = tree_and_specialized();
        let mut changed = 0;
        for (pc, i) in specialized.instructions.iter().enumerate() {
            if i.code == RET {
                let mut corrupted = specialized.clone();
                corrupted.instructions[pc].k ^= 1;
                assert_caught(&tree, &corrupted, &format!("return {pc}"));
                changed += 1;
            }
        }
        assert!(changed >= 4, "{changed}");
    }

    /// Whichever conditional jump of the specialized program goes the
    /// other way, some case tells.
    #[test]
    fn every_jump_swapped_is_caught() {
        let (tree, specialized) = tree_and_specialized();
        let mut swapped = 0;
        for (pc, i) in specialized.instructions.iter().enumerate() {
            if i.code & CLASS == JMP && i.code != JMP | JA && i.jt != i.jf {
                let mut corrupted = specialized.clone();
                let j = &mut corrupted.instructions[pc];
                (j.jt, j.jf) = (j.jf, j.jt);
                assert_caught(&tree, &corrupted, &format!("jump {pc}"));
                swapped += 1;
            }
        }
        assert!(swapped > 20, "{swapped}");
    }

    /// A program that checks an argument the other never reads, with a
    /// mask: a bit of the mask alone tells them apart.
    #[test]
    fn an_argument_only_one_reads_is_tried() {
        let allow = on_x86_64(vec![insn(RET, 0, 0, ALLOW)]);
        let masked = on_x86_64(vec![
            insn(LD | W | ABS, 0, 0, arg(2, false)),
            insn(ALU | AND, 0, 0, 0x0000_0f00),
            insn(JMP | JEQ, 1, 0, 0),
            insn(RET, 0, 0, KILL),
            insn(RET, 0, 0, ALLOW),
        ]);
        assert_caught(&allow, &masked, "a masked argument");
        let high = on_x86_64(vec![
            insn(LD | W | ABS, 0, 0, arg(5, true)),
            insn(JMP | JSET, 0, 1, 0x0400_0000),
            insn(RET, 0, 0, KILL),
            insn(RET, 0, 0, ALLOW),
        ]);
        assert_caught(&allow, &high, "a high half");
    }

    /// Two conditions together, which one alone never meets.
    #[test]
    fn two_arguments_are_tried_together() {
        let both = |second: u32| {
            on_x86_64(vec![
                insn(LD | W | ABS, 0, 0, arg(0, false)),
                insn(JMP | JEQ, 0, 3, 5),
                insn(LD | W | ABS, 0, 0, arg(3, false)),
                insn(JMP | JEQ, 0, 1, second),
                insn(RET, 0, 0, KILL),
                insn(RET, 0, 0, ALLOW),
            ])
        };
        assert!(agree(&both(7), &both(7)).is_ok());
        assert_caught(&both(7), &both(8), "arg0 == 5 && arg3 == 7");
    }

    /// Thousands of argument values on two arguments of one syscall are
    /// more pairs than it tries.
    #[test]
    fn too_many_cases_are_not_tried() {
        let mut body = Vec::new();
        for index in [0, 1] {
            for high in [false, true] {
                body.push(insn(LD | W | ABS, 0, 0, arg(index, high)));
                for k in 0..12 {
                    body.push(insn(JMP | JEQ, 0, 1, 1000 * k));
                    body.push(insn(RET, 0, 0, ALLOW));
                }
            }
        }
        body.push(insn(RET, 0, 0, KILL));
        let many = on_x86_64(body);
        assert_eq!(agree(&many, &many), Err(Unconfirmed::TooManyCases));
    }

    #[test]
    fn a_run_that_fails_agrees_with_nothing() {
        let data = SeccompData {
            arch: X86_64,
            ..SeccompData::default()
        };
        let fails = |body| run(&on_x86_64(body), &data);
        // Past the end, a scratch word never stored, a byte load.
        assert_eq!(fails(vec![insn(JMP | JA, 0, 0, 0)]), Err(Fault::OffTheEnd));
        assert_eq!(
            fails(vec![insn(LD | MEM, 0, 0, 3), insn(RET | RET_A, 0, 0, 0)]),
            Err(Fault::UnsetScratch { pc: 3, k: 3 })
        );
        assert_eq!(
            fails(vec![insn(LD | 0x10 | ABS, 0, 0, 0), insn(RET, 0, 0, ALLOW)]),
            Err(Fault::Refused {
                pc: 3,
                code: LD | 0x10 | ABS,
                k: 0
            })
        );
        // A division by a zero X returns 0, as the kernel's.
        let divides = vec![insn(ALU | DIV | SRC_X, 0, 0, 0), insn(RET, 0, 0, ALLOW)];
        assert_eq!(fails(divides.clone()).map(|r| r.action), Ok(0));
        let off = on_x86_64(vec![insn(JMP | JA, 0, 0, 0)]);
        let d = match agree(&off, &off) {
            Err(Unconfirmed::Disagree(d)) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (d.first, d.second),
            (Err(Fault::OffTheEnd), Err(Fault::OffTheEnd))
        );
        assert_eq!(
            d.to_string(),
            "arch 0xc000003e nr 0x0 args [0x0, 0x0, 0x0, 0x0, 0x0, 0x0] instruction \
             pointer 0x0: the first program fails: ran past the last instruction, \
             the second fails: ran past the last instruction"
        );
        assert!(agree(&on_x86_64(divides.clone()), &on_x86_64(divides)).is_ok());
    }

    #[test]
    fn arguments_lie_as_the_kernel_lays_them_out() {
        let data = SeccompData {
            nr: 1,
            arch: 2,
            instruction_pointer: 3 << 32 | 4,
            args: [5, 6 << 32, 0, 0, 0, u64::MAX],
        };
        let words = data.words();
        let load = |offset: u32| {
            let p = program(vec![
                insn(LD | W | ABS, 0, 0, offset),
                insn(RET | RET_A, 0, 0, 0),
            ]);
            run(&p, &data).unwrap().action
        };
        assert_eq!((words[0], words[1]), (1, 2));
        assert_eq!((load(arg(0, false)), load(arg(0, true))), (5, 0));
        assert_eq!((load(arg(1, false)), load(arg(1, true))), (0, 6));
        assert_eq!(load(arg(5, true)), u32::MAX);
        let ip_low = if cfg!(target_endian = "little") {
            8
        } else {
            12
        };
        assert_eq!((load(ip_low), load(20 - ip_low)), (4, 3));
    }
}
