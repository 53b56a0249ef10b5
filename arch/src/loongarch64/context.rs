//! Thread context switch: the callee-saved registers on the thread's stack.
//!
//! A switch is a function call (`switch_context`), so only what the LP64D
//! calling convention says a callee must preserve is saved: ra, fp, s0-s8
//! and fs0-fs7 ($f24-$f31). Everything else is dead across the call, and an
//! interrupted thread's full state is already in its trap frame, below this
//! one on the same stack.

/// The saved frame, lowest address first (layout shared with the assembly).
#[repr(C)]
struct SwitchFrame {
    /// Where `jr $ra` goes.
    ra: u64,
    /// Frame pointer ($r22).
    fp: u64,
    /// s0..=s8 ($r23..=$r31).
    s: [u64; 9],
    /// $f24..=$f31.
    fs: [u64; 8],
    _pad: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<SwitchFrame>();
const _: () = assert!(FRAME_SIZE == 160 && FRAME_SIZE.is_multiple_of(16));

core::arch::global_asm!(
    r#"
.section .text.switch_context, "ax"
.global lodger_switch_context
// $a0: where to store the outgoing stack pointer; $a1: the incoming one.
lodger_switch_context:
    addi.d      $sp, $sp, -{frame}
    st.d        $ra, $sp, 0
    st.d        $fp, $sp, 8
    .irp n, 0,1,2,3,4,5,6,7,8
    st.d        $s\n, $sp, 16 + \n * 8
    .endr
    .irp n, 24,25,26,27,28,29,30,31
    fst.d       $f\n, $sp, 88 + (\n - 24) * 8
    .endr
    st.d        $sp, $a0, 0
    move        $sp, $a1
    ld.d        $ra, $sp, 0
    ld.d        $fp, $sp, 8
    .irp n, 0,1,2,3,4,5,6,7,8
    ld.d        $s\n, $sp, 16 + \n * 8
    .endr
    .irp n, 24,25,26,27,28,29,30,31
    fld.d       $f\n, $sp, 88 + (\n - 24) * 8
    .endr
    addi.d      $sp, $sp, {frame}
    jr          $ra

// A new thread's first `jr $ra` lands here with entry in $s0, its argument in $s1.
.global lodger_thread_start
lodger_thread_start:
    move        $a0, $s1
    jirl        $ra, $s0, 0
    break       0
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
    let mut s = [0; 9];
    s[0] = entry as *const () as usize as u64;
    s[1] = arg as u64;
    let frame = SwitchFrame {
        ra: lodger_thread_start as *const () as usize as u64,
        fp: 0, // Ends frame-pointer walks.
        s,
        fs: [0; 8],
        _pad: 0,
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
