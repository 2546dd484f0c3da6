/* rv32v_start.S: rv32_start.S for cores with the vector extension (Spike: make spike): every hart first sets
 * mstatus.VS (vector instructions trap until it is set), then hart 0 goes to picolibc's _start, which sets up memory
 * and calls main(); the other harts wait until cluster_init() raises dpl_cluster_go, then each takes its own stack
 * and serves cluster_run() jobs in cluster_worker(). */
    .section .dpl_entry, "ax"   /* its own section, linked at the start of RAM: see the Makefile */
    .globl dpl_entry
dpl_entry:
    .option push
    .option arch, +zicsr
    li      t0, 0x200                /* mstatus.VS = initial: vector instructions trap until it is set */
    csrs    mstatus, t0
    .option pop
    .option push
    .option arch, +zicsr
    csrr    t0, mhartid
    .option pop
    beqz    t0, 2f
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
1:  la      t1, dpl_cluster_go
    lw      t2, 0(t1)
    beqz    t2, 1b
    la      sp, dpl_hart_stacks      /* hart h's stack ends at dpl_hart_stacks + h * DPL_STACK_BYTES */
    li      t1, 4096
    mul     t1, t1, t0
    add     sp, sp, t1
    mv      a0, t0
    call    cluster_worker
3:  j       3b
2:  j       _start
