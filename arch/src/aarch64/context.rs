//! Thread context switch: the callee-saved registers on the thread's stack.
//!
//! A switch is a function call (`switch_context`), so only what the AAPCS64
//! says a callee must preserve is saved: x19-x29, the link register and the
//! low halves of v8-v15 (d8-d15). Everything else is dead across the call by
//! the calling convention, and an interrupted thread's full state is already
//! in its trap frame, below this one on the same stack.

/// The saved frame, lowest address first (layout shared with the assembly).
#[repr(C)]
struct SwitchFrame {
    /// x19..=x28.
    x19_x28: [u64; 10],
    /// Frame pointer (x29).
    fp: u64,
    /// Where `ret` goes (x30).
    lr: u64,
    /// d8..=d15.
    d8_d15: [u64; 8],
}

const FRAME_SIZE: usize = core::mem::size_of::<SwitchFrame>();
const _: () = assert!(FRAME_SIZE == 160 && FRAME_SIZE.is_multiple_of(16));

core::arch::global_asm!(
    r#"
.section .text.switch_context, "ax"
.global lodger_switch_context
// x0: where to store the outgoing stack pointer; x1: the incoming one.
lodger_switch_context:
    sub     sp, sp, #{frame}
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x9, sp
    str     x9, [x0]
    mov     sp, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #{frame}
    ret

// A new thread's first `ret` lands here with entry in x19, its argument in x20.
.global lodger_thread_start
lodger_thread_start:
    mov     x0, x20
    blr     x19
    brk     #0
"#,
    frame = const FRAME_SIZE,
);

unsafe extern "C" {
    fn lodger_switch_context(save_sp: *mut usize, load_sp: usize);
    fn lodger_thread_start();
}

/// See [`crate::Arch::init_context`].
pub(super) fn init_context(
    stack_top: usize,
    entry: extern "C" fn(usize) -> !,
    arg: usize,
) -> usize {
    let sp = (stack_top & !15) - FRAME_SIZE;
    let mut x19_x28 = [0; 10];
    x19_x28[0] = entry as *const () as usize as u64;
    x19_x28[1] = arg as u64;
    let frame = SwitchFrame {
        x19_x28,
        fp: 0, // Ends frame-pointer walks.
        lr: lodger_thread_start as *const () as usize as u64,
        d8_d15: [0; 8],
    };
    // SAFETY: the caller owns the stack; the frame fits below its top.
    unsafe { (sp as *mut SwitchFrame).write(frame) };
    sp
}

/// See [`crate::Arch::switch_context`].
///
/// # Safety
/// As there.
pub(super) unsafe fn switch_context(save_sp: *mut usize, load_sp: usize) {
    // SAFETY: forwarded to the caller.
    unsafe { lodger_switch_context(save_sp, load_sp) }
}
