/* spike_start.S: where Spike's harts start (at the ELF's entry, 0x80000000) for programs linked by spike.ld.
 * Every hart takes its own stack (DPL_SPIKE_STACK bytes below spike_stacks_end, by mhartid) and enables the vector
 * unit (mstatus.VS = initial: vector instructions trap until it is set). Hart 0 clears .bss and calls main(), whose
 * return value ends the simulation through HTIF; the other harts call spike_worker(hartid). */
    .section .text.start, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    csrr    t0, mhartid
    la      sp, spike_stacks_end
    li      t1, 8192                  /* DPL_SPIKE_STACK */
    mul     t1, t1, t0
    sub     sp, sp, t1
    li      t1, 0x200                 /* mstatus.VS = 1 (initial) */
    csrs    mstatus, t1
    bnez    t0, 2f
    la      t1, __bss_start
    la      t2, __bss_end
1:  bgeu    t1, t2, 3f
    sw      zero, 0(t1)
    addi    t1, t1, 4
    j       1b
3:  call    main
    call    htif_exit
2:  mv      a0, t0
    call    spike_worker
4:  j       4b

    .bss
    .align  4
    .globl  spike_stacks
spike_stacks:
    .space  8192 * 8
spike_stacks_end:
