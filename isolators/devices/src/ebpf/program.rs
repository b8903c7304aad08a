//! Generating the device filter program from allow rules.
//!
//! The kernel runs the program on every device access with `r1` pointing
//! at a `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
//! where `access_type` is `access << 16 | type`. It returns 1 to allow and
//! 0 to deny. The program loads the four values once, then tries each rule
//! in turn; a rule's checks jump to the next rule on a mismatch, and a rule
//! that matches returns 1. Nothing matching returns 0: deny by default.
//!
//! Registers: `r2` type, `r3` requested access, `r4` major, `r5` minor;
//! `r1` (the context, no longer needed) is a scratch register.

use crate::ebpf::insn::{Insn, AND64_IMM, JNE_IMM, JNE_REG, MOV64_REG, RSH64_IMM};
use crate::rule::{Access, DeviceKind, DeviceRule};

/// `BPF_DEVCG_DEV_BLOCK`.
pub const DEV_BLOCK: i32 = 1;
/// `BPF_DEVCG_DEV_CHAR`.
pub const DEV_CHAR: i32 = 2;

const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const SCRATCH: u8 = 1;

/// The program allowing exactly `rules`.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut out = vec![
        Insn::load_u32(TYPE, 1, 0),
        Insn::new(AND64_IMM, TYPE, 0, 0, 0xffff),
        Insn::load_u32(ACCESS, 1, 0),
        Insn::new(RSH64_IMM, ACCESS, 0, 0, 16),
        Insn::load_u32(MAJOR, 1, 4),
        Insn::load_u32(MINOR, 1, 8),
    ];
    for rule in rules {
        let checks = checks(rule);
        let unconditional = checks.is_empty();
        out.extend(block(checks));
        if unconditional {
            // Everything matches this rule: anything after it would be
            // unreachable, which the verifier refuses.
            return out;
        }
    }
    out.push(Insn::mov_imm(0, 0));
    out.push(Insn::exit());
    out
}

/// A check of one rule: the instructions before a "goto next rule" jump,
/// and the jump with its offset left at 0.
type Check = Vec<Insn>;

fn checks(rule: &DeviceRule) -> Vec<Check> {
    let mut checks = Vec::new();
    match rule.kind {
        DeviceKind::All => {}
        DeviceKind::Char => checks.push(vec![Insn::new(JNE_IMM, TYPE, 0, 0, DEV_CHAR)]),
        DeviceKind::Block => checks.push(vec![Insn::new(JNE_IMM, TYPE, 0, 0, DEV_BLOCK)]),
    }
    if rule.access != Access::ALL {
        // Every access asked for must be allowed: (asked & allowed) == asked.
        checks.push(vec![
            Insn::new(MOV64_REG, SCRATCH, ACCESS, 0, 0),
            Insn::new(AND64_IMM, SCRATCH, 0, 0, rule.access.bits().into()),
            Insn::new(JNE_REG, SCRATCH, ACCESS, 0, 0),
        ]);
    }
    for (register, number) in [(MAJOR, rule.major), (MINOR, rule.minor)] {
        if let Some(number) = number {
            // Device numbers are at most 32 bits wide; the ones that exist
            // (12-bit majors, 20-bit minors) fit in the signed immediate.
            let imm = i32::try_from(number).unwrap_or(i32::MAX);
            checks.push(vec![Insn::new(JNE_IMM, register, 0, 0, imm)]);
        }
    }
    checks
}

/// One rule's instructions: its checks, each jumping past the block on a
/// mismatch, then `return 1`.
fn block(checks: Vec<Check>) -> Vec<Insn> {
    let mut insns: Vec<Insn> = checks.into_iter().flatten().collect();
    insns.push(Insn::mov_imm(0, 1));
    insns.push(Insn::exit());
    let len = insns.len();
    for (i, insn) in insns.iter_mut().enumerate() {
        if insn.code == JNE_IMM || insn.code == JNE_REG {
            // The offset counts from the next instruction to the first one
            // after the block.
            insn.off = (len - i - 1) as i16;
        }
    }
    insns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::insn::{EXIT, LDX_MEM_W, MOV64_IMM};

    /// (code, dst, src, off, imm) of each instruction.
    fn parts(insns: &[Insn]) -> Vec<(u8, u8, u8, i16, i32)> {
        insns
            .iter()
            .map(|i| (i.code, i.dst(), i.src(), i.off, i.imm))
            .collect()
    }

    const PROLOGUE: [(u8, u8, u8, i16, i32); 6] = [
        (LDX_MEM_W, 2, 1, 0, 0),
        (AND64_IMM, 2, 0, 0, 0xffff),
        (LDX_MEM_W, 3, 1, 0, 0),
        (RSH64_IMM, 3, 0, 0, 16),
        (LDX_MEM_W, 4, 1, 4, 0),
        (LDX_MEM_W, 5, 1, 8, 0),
    ];

    #[test]
    fn no_rules_deny_everything() {
        let mut expected = PROLOGUE.to_vec();
        expected.extend([(MOV64_IMM, 0, 0, 0, 0), (EXIT, 0, 0, 0, 0)]);
        assert_eq!(parts(&program(&[])), expected);
    }

    #[test]
    fn each_rule_is_a_block_that_jumps_to_the_next_on_mismatch() {
        let rules = [
            // c *:* m: type, access.
            DeviceRule {
                kind: DeviceKind::Char,
                major: None,
                minor: None,
                access: Access::MKNOD,
            },
            // c 1:3 rwm: type, major, minor.
            DeviceRule::char(1, 3),
            // c 136:* rwm: type, major.
            DeviceRule {
                minor: None,
                ..DeviceRule::char(136, 0)
            },
            // b 8:0 rw: type, access, major, minor.
            DeviceRule {
                kind: DeviceKind::Block,
                major: Some(8),
                minor: Some(0),
                access: Access::parse("rw").unwrap(),
            },
        ];
        let mut expected = PROLOGUE.to_vec();
        expected.extend([
            // c *:* m
            (JNE_IMM, 2, 0, 5, DEV_CHAR),
            (MOV64_REG, 1, 3, 0, 0),
            (AND64_IMM, 1, 0, 0, 1),
            (JNE_REG, 1, 3, 2, 0),
            (MOV64_IMM, 0, 0, 0, 1),
            (EXIT, 0, 0, 0, 0),
            // c 1:3 rwm
            (JNE_IMM, 2, 0, 4, DEV_CHAR),
            (JNE_IMM, 4, 0, 3, 1),
            (JNE_IMM, 5, 0, 2, 3),
            (MOV64_IMM, 0, 0, 0, 1),
            (EXIT, 0, 0, 0, 0),
            // c 136:* rwm
            (JNE_IMM, 2, 0, 3, DEV_CHAR),
            (JNE_IMM, 4, 0, 2, 136),
            (MOV64_IMM, 0, 0, 0, 1),
            (EXIT, 0, 0, 0, 0),
            // b 8:0 rw
            (JNE_IMM, 2, 0, 7, DEV_BLOCK),
            (MOV64_REG, 1, 3, 0, 0),
            (AND64_IMM, 1, 0, 0, 6),
            (JNE_REG, 1, 3, 4, 0),
            (JNE_IMM, 4, 0, 3, 8),
            (JNE_IMM, 5, 0, 2, 0),
            (MOV64_IMM, 0, 0, 0, 1),
            (EXIT, 0, 0, 0, 0),
            // default: deny
            (MOV64_IMM, 0, 0, 0, 0),
            (EXIT, 0, 0, 0, 0),
        ]);
        assert_eq!(parts(&program(&rules)), expected);
    }

    #[test]
    fn a_rule_matching_everything_ends_the_program() {
        let all = DeviceRule {
            kind: DeviceKind::All,
            major: None,
            minor: None,
            access: Access::ALL,
        };
        let insns = program(&[all, DeviceRule::char(1, 3)]);
        let mut expected = PROLOGUE.to_vec();
        expected.extend([(MOV64_IMM, 0, 0, 0, 1), (EXIT, 0, 0, 0, 0)]);
        assert_eq!(parts(&insns), expected);
    }

    #[test]
    fn the_default_list_program_has_one_block_per_rule() {
        let insns = program(&crate::rule::default_rules());
        let exits = insns.iter().filter(|i| i.code == EXIT).count();
        assert_eq!(exits, crate::rule::default_rules().len() + 1);
        // Every jump lands inside the program.
        for (i, insn) in insns.iter().enumerate() {
            if insn.code == JNE_IMM || insn.code == JNE_REG {
                assert!(i + 1 + (insn.off as usize) < insns.len());
            }
        }
    }
}
