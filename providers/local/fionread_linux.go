package local

import "syscall"

const fionread = syscall.TIOCINQ
