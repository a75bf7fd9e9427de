#include "textflag.h"

// func regs() (sp, pc uintptr): the SP and PC its caller resumes with.
TEXT ·regs(SB),NOSPLIT,$0-16
	LEAQ	8(SP), AX
	MOVQ	AX, sp+0(FP)
	MOVQ	0(SP), AX
	MOVQ	AX, pc+8(FP)
	RET
