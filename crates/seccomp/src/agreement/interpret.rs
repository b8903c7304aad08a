//! Classic BPF as seccomp runs it: the instructions `seccomp(2)` takes,
//! interpreted over one `struct seccomp_data`.

use libc::sock_filter;

use crate::bpf::*;
use crate::SeccompProgram;

/// `struct seccomp_data`: what a filter is given of one syscall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeccompData {
    pub nr: u32,
    /// The `AUDIT_ARCH_*` value of the syscall's calling convention.
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl SeccompData {
    /// The 16 words a filter loads (`BPF_LD | BPF_W | BPF_ABS` at four
    /// times the index), as the kernel lays the struct out.
    pub fn words(&self) -> [u32; 16] {
        let mut words = [0; 16];
        words[0] = self.nr;
        words[1] = self.arch;
        for slot in 0..SLOTS {
            let [first, second] = halves(self.slot(slot));
            words[first_word(slot)] = first;
            words[first_word(slot) + 1] = second;
        }
        words
    }

    /// The 64-bit field `slot` (0 the instruction pointer, 1 to 6 the
    /// arguments).
    pub(crate) fn slot(&self, slot: usize) -> u64 {
        match slot {
            0 => self.instruction_pointer,
            _ => self.args[slot - 1],
        }
    }

    pub(crate) fn slot_mut(&mut self, slot: usize) -> &mut u64 {
        match slot {
            0 => &mut self.instruction_pointer,
            _ => &mut self.args[slot - 1],
        }
    }
}

/// How many 64-bit fields follow `nr` and `arch`: the instruction pointer
/// and the six arguments.
pub(crate) const SLOTS: usize = 7;

/// The word index of the first half (in memory) of 64-bit field `slot`.
pub(crate) fn first_word(slot: usize) -> usize {
    2 + 2 * slot
}

/// A 64-bit field as the two words a filter loads, in the order of their
/// offsets (the low half first on a little-endian machine).
pub(crate) fn halves(v: u64) -> [u32; 2] {
    let b = v.to_ne_bytes();
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    ]
}

/// The 64-bit field whose [`halves`] these are.
pub(crate) fn whole([first, second]: [u32; 2]) -> u64 {
    let (a, b) = (first.to_ne_bytes(), second.to_ne_bytes());
    u64::from_ne_bytes([a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]])
}

/// A run that ended in a return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// What the program returned: the seccomp action and its data.
    pub action: u32,
    /// How many instructions it ran.
    pub steps: usize,
    /// The `seccomp_data` words it loaded, a bit per word (bit 0 `nr`,
    /// bit 1 `arch`, then the instruction pointer and the arguments).
    pub loaded: u16,
}

/// Why a run did not end as the kernel's would: the program does what
/// seccomp refuses to load, or what this interpreter does not follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The program ran or jumped past its last instruction.
    OffTheEnd,
    /// An instruction seccomp does not take (an opcode, a load outside
    /// `seccomp_data` or scratch memory, a constant division by zero, a
    /// shift by 32 or more).
    Refused { pc: usize, code: u16, k: u32 },
    /// A load of a scratch word this run had not stored to (the kernel
    /// refuses a program that may).
    UnsetScratch { pc: usize, k: u32 },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::OffTheEnd => write!(f, "ran past the last instruction"),
            Fault::Refused { pc, code, k } => {
                write!(
                    f,
                    "instruction {pc} (code {code:#06x}, k {k:#x}) is refused"
                )
            }
            Fault::UnsetScratch { pc, k } => {
                write!(f, "instruction {pc} loads scratch word {k}, never stored")
            }
        }
    }
}

/// Runs `program` over `data` as seccomp would.
pub fn run(program: &SeccompProgram, data: &SeccompData) -> Result<Run, Fault> {
    run_words(&program.instructions, &data.words())
}

/// Runs `program` over the `seccomp_data` whose [`SeccompData::words`]
/// these are.
pub(crate) fn run_words(program: &[sock_filter], words: &[u32; 16]) -> Result<Run, Fault> {
    // The kernel clears A and X before a classic program.
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let (mut scratch, mut stored) = ([0u32; 16], 0u16);
    let mut loaded = 0u16;
    for steps in 1.. {
        let &sock_filter { code, jt, jf, k } = program.get(pc).ok_or(Fault::OffTheEnd)?;
        let at = pc;
        pc += 1;
        let refused = Fault::Refused { pc: at, code, k };
        let operand = if code & SRC_X != 0 { x } else { k };
        let mut load = |k: u32| -> Result<u32, Fault> {
            match code & MODE {
                ABS if code & CLASS == LD && k.is_multiple_of(4) && k < DATA_LEN => {
                    loaded |= 1 << (k / 4);
                    Ok(words[k as usize / 4])
                }
                IMM => Ok(k),
                LEN => Ok(DATA_LEN),
                MEM if k < 16 && stored & 1 << k != 0 => Ok(scratch[k as usize]),
                MEM if k < 16 => Err(Fault::UnsetScratch { pc: at, k }),
                _ => Err(refused),
            }
        };
        match code & CLASS {
            _ if code & SIZE != W && code & CLASS <= LDX => return Err(refused),
            LD => a = load(k)?,
            LDX => x = load(k)?,
            ST | STX if code & !CLASS == 0 && k < 16 => {
                scratch[k as usize] = if code == ST { a } else { x };
                stored |= 1 << k;
            }
            ALU if code & !(OP | SRC_X | CLASS) == 0 => {
                a = match code & OP {
                    // A division by a zero X ends the run with 0 (the
                    // kernel checks a constant divisor when it loads).
                    DIV if operand == 0 && code & SRC_X != 0 => {
                        return Ok(Run {
                            action: 0,
                            steps,
                            loaded,
                        })
                    }
                    NEG if code == ALU | NEG => a.wrapping_neg(),
                    op => alu(op, a, operand).ok_or(refused)?,
                }
            }
            JMP if code == JMP | JA => pc = pc.checked_add(k as usize).ok_or(Fault::OffTheEnd)?,
            JMP if code & !(OP | SRC_X | CLASS) == 0 => {
                let taken = compare(code & OP, a, operand).ok_or(refused)?;
                pc += usize::from(if taken { jt } else { jf });
            }
            RET if code == RET => {
                return Ok(Run {
                    action: k,
                    steps,
                    loaded,
                })
            }
            RET if code == RET | RET_A => {
                return Ok(Run {
                    action: a,
                    steps,
                    loaded,
                })
            }
            MISC if code == MISC | TAX => x = a,
            MISC if code == MISC | TXA => a = x,
            _ => return Err(refused),
        }
    }
    unreachable!("a run ends within usize::MAX steps")
}

/// The most instructions a run of `program` can take: the longest path
/// from the first instruction to a return (every jump goes forward).
pub fn longest_path(program: &SeccompProgram) -> usize {
    let program = &program.instructions;
    let mut longest = vec![0usize; program.len()];
    for pc in (0..program.len()).rev() {
        let sock_filter { code, jt, jf, k } = program[pc];
        let after = |skip: usize| longest.get(pc + 1 + skip).copied().unwrap_or(0);
        longest[pc] = 1 + match code & CLASS {
            RET => 0,
            JMP if code == JMP | JA => after(k as usize),
            JMP => after(jt.into()).max(after(jf.into())),
            _ => after(0),
        };
    }
    longest.first().copied().unwrap_or(0)
}
