#!/usr/bin/env python3
# Mechanical CUDA -> host C++ rewrite: kernel launches and extern __shared__ declarations only.
import re, sys
src = open(sys.argv[1]).read()
n0 = src.count('<<<')
# name<targs><<<cfg>>>(  ->  cusim_launch(cfg, name<targs>,
src, n = re.subn(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\(', r'cusim_launch(\2, \1, ', src, flags=re.S)
assert n == n0, (n, n0)
src, m = re.subn(r'extern __shared__ __align__\(\d+\) unsigned char (\w+)\[\];',
                 r'unsigned char *\1 = cusim_smem();', src)
assert m == 2, m
open(sys.argv[2], 'w').write(src)
print("rewrote %d launches, %d extern __shared__" % (n, m))
