//go:build tamago && arm

#include "textflag.h"

// func dsb()
TEXT ·dsb(SB),NOSPLIT|NOFRAME,$0
	// DSB SY (ARMv7-A ARM A8.8.44): every earlier memory access,
	// including buffered stores to non-cacheable DMA memory, completes
	// before anything after it.
	WORD	$0xf57ff04f
	RET
