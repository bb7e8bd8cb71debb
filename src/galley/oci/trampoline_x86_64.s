# The x86_64 trampoline of galley.oci.trampoline: the last program every container process
# runs before its own. Assembled once with GNU as (intel syntax); the bytes of .text are
# galley.oci.trampoline.X86_64, and tests/oci/test_trampoline.py checks that they still match.
#
#   as -o t.o trampoline_x86_64.s && objcopy -O binary -j .text t.o t.bin
#
# At entry the stack holds argc, argv[], NULL, envp[]: argv is [" ", path, process argv...].
# Every failure writes one line to fd 2 and exits 127, except a failed execve of the process:
# "exec <path>: <error>" and 1, as runc's init. The error texts follow the seccomp program.
.intel_syntax noprefix
.text
.globl _start
_start:
    mov r12, rsp
    mov edi, 4                      # PR_SET_DUMPABLE, 0: first, before anyone can attach
    xor esi, esi
    call prctl2
    mov edi, 15                     # PR_SET_NAME "galley-init"
    lea rsi, [rip+name]
    call prctl2
    mov rax, [r12]                  # argc >= 2 and argv[0] == " ": galley starts us, a shebang cannot
    cmp rax, 2
    lea r13, [rip+msg_usage]
    jb fail
    mov rax, [r12+8]
    cmp byte ptr [rax], 0x20            # " ": a shebang can never start with a space
    jne fail
    mov edi, dword ptr [rip+fifo_fd]
    test edi, edi
    js 1f
    call catch_signals
    mov edi, dword ptr [rip+fifo_fd]
    push rax
    mov rsi, rsp
    mov edx, 1
    xor eax, eax                    # read(fifo, buf, 1)
    syscall
    pop rcx
    cmp rax, 1
    lea r13, [rip+msg_fifo]
    jne fail
    mov edi, dword ptr [rip+fifo_fd]
    mov eax, 3                      # close(fifo)
    syscall
1:
    cmp dword ptr [rip+nnp], 0
    je 2f
    mov edi, 38                     # PR_SET_NO_NEW_PRIVS, 1
    mov esi, 1
    call prctl2
    lea r13, [rip+msg_nnp]
    test rax, rax
    jnz fail
2:
    mov eax, dword ptr [rip+prog_len]
    test eax, eax
    jz 3f
    lea rcx, [rip+program]
    push rcx                        # struct sock_fprog {u16 len; filter *}
    push rax
    mov edi, 1                      # SECCOMP_SET_MODE_FILTER
    mov esi, dword ptr [rip+sc_flags]
    mov rdx, rsp
    mov eax, 317                    # seccomp
    syscall
    lea r13, [rip+msg_seccomp]
    test rax, rax
    jnz fail
3:
    mov rax, [r12]
    mov rdi, [r12+16]               # argv[1]: the path
    lea rsi, [r12+24]               # argv + 2: the process's own argv
    lea rdx, [r12+rax*8+16]         # envp
    mov eax, 59                     # execve
    syscall
    neg rax                         # it returned: the errno, reported in runc's words,
    mov rbx, rax                    # "exec <path>: <error>", and exit 1 as runc's init does
    mov rsi, [r12+16]
    mov rdi, rsi
4:
    cmp byte ptr [rdi], 0           # strlen(path)
    je 5f
    inc rdi
    jmp 4b
5:
    sub rdi, rsi
    sub rsp, 112                    # five iovecs, then room for "errno <number>"
    lea rax, [rip+word_exec]
    mov [rsp], rax
    mov qword ptr [rsp+8], 5
    mov [rsp+16], rsi
    mov [rsp+24], rdi
    lea rax, [rip+word_colon]
    mov [rsp+32], rax
    mov qword ptr [rsp+40], 2
    lea rax, [rip+word_newline]
    mov [rsp+64], rax
    mov qword ptr [rsp+72], 1
    mov ecx, dword ptr [rip+prog_len]
    lea rsi, [rip+program]
    lea rsi, [rsi+rcx*8]            # the error texts follow the program: u16 count, u16
    movzx ecx, word ptr [rsi]       # offsets, each to a u8 length and the text
    cmp rbx, rcx
    jae 6f
    movzx ecx, word ptr [rsi+rbx*2+2]
    add rsi, rcx
    movzx ecx, byte ptr [rsi]
    inc rsi
    jmp 8f
6:
    lea rdi, [rsp+112]              # an errno without a text (a seccomp errnoRet): "errno N"
    mov rax, rbx
    mov ecx, 10
7:
    xor edx, edx
    div rcx
    add dl, 0x30
    dec rdi
    mov [rdi], dl
    test rax, rax
    jnz 7b
    sub rdi, 6
    mov dword ptr [rdi], 0x6e727265 # "errn"
    mov word ptr [rdi+4], 0x206f    # "o "
    mov rsi, rdi
    lea rcx, [rsp+112]
    sub rcx, rdi
8:
    mov [rsp+48], rsi
    mov [rsp+56], rcx
    mov edi, 2
    mov rsi, rsp
    mov edx, 5
    mov eax, 20                     # writev(2, iov, 5)
    syscall
    mov edi, 1
    mov eax, 231                    # exit_group(1)
    syscall
fail:
    movzx edx, byte ptr [r13]       # write(2, message, length)
    lea rsi, [r13+1]
    mov edi, 2
    mov eax, 1
    syscall
    mov edi, 127
    mov eax, 231                    # exit_group(127)
    syscall
catch_signals:                      # while it waits for start, as runc's init does: die of the
    push rbx                        # signals it dies of, ignore the ones it ignores (pid 1 of a
    lea rcx, [rip+restorer]         # new pid namespace would drop every signal it has no handler
    sub rsp, 32                     # for, even the host's SIGTERM)
    mov [rsp+16], rcx               # struct sigaction: handler, flags, restorer, mask
    mov qword ptr [rsp+24], 0
    lea rbx, [rip+signals]
3:
    movzx edi, byte ptr [rbx]
    test edi, edi
    jz 4f
    lea rax, [rip+on_signal]        # SA_RESTORER (x86_64 needs one), SA_RESETHAND, SA_NODEFER:
    mov ecx, 0xc4000000             # the handler can die of the signal itself
    btr edi, 7                      # the high bit marks a signal to ignore
    jnc 5f
    lea rax, [rip+ignore]           # SA_RESTORER, SA_RESTART: the read goes on
    mov ecx, 0x14000000
5:
    mov [rsp], rax
    mov [rsp+8], rcx
    mov rsi, rsp
    xor edx, edx
    mov r10d, 8
    mov eax, 13                     # rt_sigaction(sig, &action, NULL, 8)
    syscall
    inc rbx
    jmp 3b
4:
    add rsp, 32
    pop rbx
    ret                             # execve resets caught signals to their defaults
on_signal:                          # die of it: back at its default action it ends us, except
    mov ebx, edi                    # as pid 1 of a pid namespace, which drops it; then exit as
    mov eax, 39                     # a shell reports a signal: 128 + its number
    syscall                         # getpid
    mov edi, eax
    mov esi, ebx
    mov eax, 62                     # kill(getpid(), sig)
    syscall
    lea edi, [rbx+128]
    mov eax, 231                    # exit_group
    syscall
ignore:                             # the handler of an ignored signal
    ret
restorer:
    mov eax, 15                     # rt_sigreturn
    syscall
prctl2:                             # prctl(edi, rsi, 0, 0, 0)
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
    mov eax, 157
    syscall
    ret
.balign 8, 0xcc                     # an explicit fill: every assembler pads alike
params:                             # patched by galley.oci.trampoline
fifo_fd: .long -1                   # the exec fifo to read one byte from, or -1
nnp: .long 0                        # 1: set no_new_privs
sc_flags: .long 0                   # seccomp(2) flags for the program
prog_len: .long 0                   # instructions in the program, 0: none
name: .asciz "galley-init"
signals:                            # HUP INT QUIT ILL TRAP ABRT BUS FPE SEGV TERM STKFLT SYS; then,
    .byte 1, 2, 3, 4, 5, 6, 7, 8, 11, 15, 16, 31       # ignored (0x80 +): USR1 USR2 PIPE ALRM
    .byte 0x8a, 0x8c, 0x8d, 0x8e, 0x98, 0x99, 0x9a, 0x9b, 0x9d, 0x9e, 0
                                    # XCPU XFSZ VTALRM PROF IO PWR
msg_usage: .byte 9f-8f
8:  .ascii "galley-runc init: not a program to run by hand\n"
9:
msg_fifo: .byte 9f-8f
8:  .ascii "galley-runc init: waiting for start failed\n"
9:
msg_nnp: .byte 9f-8f
8:  .ascii "galley-runc init: setting no_new_privs failed\n"
9:
msg_seccomp: .byte 9f-8f
8:  .ascii "galley-runc init: loading the seccomp filter failed\n"
9:
word_exec: .ascii "exec "
word_colon: .ascii ": "
word_newline: .ascii "\n"
.balign 8, 0
program:                            # the BPF program is appended here, then the error texts
