//go:build tamago

#include "textflag.h"

// Intel SDM Vol. 2A, "IN—Input from Port": EC is IN AL, DX.
// Intel SDM Vol. 2B, "OUT—Output to Port": EE is OUT DX, AL.

// func In8(port uint16) uint8
TEXT ·In8(SB),NOSPLIT,$0-9
	MOVW	port+0(FP), DX
	BYTE	$0xec
	MOVB	AL, ret+8(FP)
	RET

// func Out8(port uint16, val uint8)
TEXT ·Out8(SB),NOSPLIT,$0-3
	MOVW	port+0(FP), DX
	MOVB	val+2(FP), AL
	BYTE	$0xee
	RET
