//go:build tamago

#include "textflag.h"

// func cli()
TEXT ·cli(SB),NOSPLIT,$0
	CLI
	RET

// func stiHlt()
//
// STI delays interrupts until after the next instruction (Intel SDM Vol. 2B
// "STI"), so an interrupt that became pending after cli() still ends the HLT
// instead of being taken before it.
TEXT ·stiHlt(SB),NOSPLIT,$0
	STI
	HLT
	RET

// func sidt(p *[10]byte)
TEXT ·sidt(SB),NOSPLIT,$0-8
	MOVQ	p+0(FP), AX
	SIDT	(AX)
	RET

// wakeHandler is the interrupt gate of the idle timer: count the interrupt
// in wakeups, acknowledge the local APIC (write to EOI, Intel SDM Vol. 3A §11.8.5) and return.
TEXT ·wakeHandler(SB),NOSPLIT|NOFRAME,$0
	PUSHQ	AX
	LOCK
	INCQ	·wakeups(SB)
	MOVL	$0xfee000b0, AX
	MOVL	$0, (AX)
	POPQ	AX
	IRETQ

// func wakeHandlerAddr() uintptr
TEXT ·wakeHandlerAddr(SB),NOSPLIT,$0-8
	MOVQ	$·wakeHandler(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// nicHandler is the interrupt gate of the NIC: count the interrupt in
// nicIRQs for the idle hook (see NIC.EnableInterrupt), acknowledge the local
// APIC and return.
TEXT ·nicHandler(SB),NOSPLIT|NOFRAME,$0
	PUSHQ	AX
	LOCK
	INCQ	·nicIRQs(SB)
	MOVL	$0xfee000b0, AX
	MOVL	$0, (AX)
	POPQ	AX
	IRETQ

// func nicHandlerAddr() uintptr
TEXT ·nicHandlerAddr(SB),NOSPLIT,$0-8
	MOVQ	$·nicHandler(SB), AX
	MOVQ	AX, ret+0(FP)
	RET
