#!/usr/bin/env python3
# Mechanical CUDA -> host C++ rewrite: kernel launches and __shared__ declarations only.
#   name<targs><<<cfg>>>(args)              -> cusim_launch(cfg, name<targs>, args)
#   extern __shared__ __align__(n) unsigned char s[];  -> unsigned char *s = cusim_smem();
#   __shared__ T a[8][33], b[32];           -> auto &a = cusim_static_smem<T[8][33]>(0); auto &b = ...(1);
import re, sys
src = open(sys.argv[1]).read()
n0 = src.count('<<<')
src, n = re.subn(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\(', r'cusim_launch(\2, \1, ', src, flags=re.S)
assert n == n0, (n, n0)
m0 = src.count('extern __shared__')
src, m = re.subn(r'extern __shared__ __align__\(\d+\) unsigned char (\w+)\[\];',
                 r'unsigned char *\1 = cusim_smem();', src)
assert m == m0, (m, m0)
key = [0]
def static_decl(mo):
    ty, out = mo.group(1).strip(), []
    for d in mo.group(2).split(','):
        dm = re.fullmatch(r'\s*(\w+)\s*((?:\[[^\]]+\]\s*)*)', d)
        assert dm, d
        out.append('auto &%s = cusim_static_smem<%s%s>(%d);' % (dm.group(1), ty, dm.group(2).replace(' ', ''), key[0]))
        key[0] += 1
    return ' '.join(out)
src, k = re.subn(r'__shared__\s+((?:__align__\(\d+\)\s+)?[A-Za-z_][\w:]*(?:\s+[A-Za-z_][\w:]*)*?)\s+'
                 r'(\w+\s*(?:\[[^\]]+\]\s*)*(?:,\s*\w+\s*(?:\[[^\]]+\]\s*)*)*);', static_decl, src)
src = re.sub(r'cusim_static_smem<__align__\(\d+\)\s+', 'cusim_static_smem<', src)
left = [l for l in src.split('\n') if '__shared__' in l and not l.lstrip().startswith('//')]
assert not left, left
open(sys.argv[2], 'w').write(src)
print("rewrote %d launches, %d extern __shared__, %d static __shared__ arrays" % (n, m, key[0]))
