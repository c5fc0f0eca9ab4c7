#!/usr/bin/env python3
# Mechanical CUDA -> host C++ rewrite: kernel launches and __shared__ declarations only; line
# numbers are kept (a #line directive names the .cu file, so compiler errors and __FILE__ /
# __LINE__ refer to the original source).
#   name<targs><<<g, b[, smem[, st]]>>>(args)  -> cusim_launch("name<targs> (file:line)", g, b, smem|0, st|0, name<targs>, args)
#   extern __shared__ [__align__(n)] T s[];   -> T *s = (T *)cusim_smem();
#   __shared__ T a[8][33], b[32];              -> auto &a = cusim_static_smem<T[8][33]>(0); auto &b = ...(1);
# Usage: rewrite.py in.cu out.cpp
import re, sys

def split_top(s):
    """Splits s at commas outside (), [], {} and <> of templates (a < followed by a >)."""
    parts, depth, cur = [], 0, ''
    for c in s:
        if c in '([{': depth += 1
        elif c in ')]}': depth -= 1
        if c == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += c
    parts.append(cur)
    return parts

def rewrite_launches(src, path):
    out, i, n = [], 0, 0
    while True:
        j = src.find('<<<', i)
        if j < 0:
            out.append(src[i:])
            return ''.join(out), n
        k = j
        if src[k - 1] == '>':  # template arguments: back to the matching <
            depth, k = 0, k - 1
            while True:
                c = src[k]
                if c == '>': depth += 1
                elif c == '<': depth -= 1
                if depth == 0: break
                k -= 1
        m = re.search(r'[A-Za-z_][\w:]*\s*$', src[i:k])
        assert m, 'no kernel name before <<< at offset %d' % j
        start = i + m.start()
        name = src[start:j]
        e = src.find('>>>', j)
        cfg = split_top(src[j + 3:e])
        assert 2 <= len(cfg) <= 4, 'launch configuration %r' % src[j + 3:e]
        cfg += [' 0'] * (4 - len(cfg))
        p = e + 3
        while src[p].isspace(): p += 1
        assert src[p] == '(', 'no ( after >>> at offset %d' % e
        q = p + 1
        while src[q] in ' \t': q += 1
        label = '"%s (%s:" CUSIM_STR(__LINE__) ")"' % (re.sub(r'\s+', ' ', name).replace('"', ''), path)
        out.append(src[i:start])
        out.append('cusim_launch(%s, %s, %s%s' % (label, ','.join(cfg), name.strip(), '' if src[q] == ')' else ', '))
        out.append(src[e + 3:p].replace('\n', ' ') + '\n' * src[e + 3:p].count('\n'))  # keep the line count
        i = p + 1
        n += 1

def main():
    path = sys.argv[1]
    src0 = open(path).read()
    n0 = src0.count('<<<')
    src, n = rewrite_launches(src0, path)
    assert n == n0, (n, n0)
    m0 = src.count('extern __shared__')
    src, m = re.subn(r'extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([A-Za-z_][\w:]*(?:\s+[A-Za-z_][\w:]*)*?)\s*'
                     r'(?:__align__\(\d+\)\s+)?(\w+)\s*\[\s*\]\s*;',
                     r'\1 *\2 = (\1 *)cusim_smem();', src)
    assert m == m0, (m, m0)
    key = [0]

    def static_decl(mo):
        ty, out = mo.group(1).strip(), []
        for d in split_top(mo.group(2)):
            dm = re.fullmatch(r'\s*(\w+)\s*((?:\[[^\]]+\]\s*)*)', d)
            assert dm, d
            out.append('auto &%s = cusim_static_smem<%s%s>(%d);' % (dm.group(1), ty, re.sub(r'\s+', '', dm.group(2)), key[0]))
            key[0] += 1
        return ' '.join(out)
    src, k = re.subn(r'(?<!extern )__shared__\s+((?:__align__\(\d+\)\s+)?[A-Za-z_][\w:]*(?:\s+[A-Za-z_][\w:]*)*?)\s+'
                     r'(?:__align__\(\d+\)\s+)?'
                     r'(\w+\s*(?:\[[^\]]+\]\s*)*(?:,\s*\w+\s*(?:\[[^\]]+\]\s*)*)*);', static_decl, src)
    src = re.sub(r'cusim_static_smem<__align__\(\d+\)\s+', 'cusim_static_smem<', src)
    left = [l for l in src.split('\n') if '__shared__' in l and not l.lstrip().startswith('//')]
    assert not left, left
    assert src.count('\n') == src0.count('\n'), 'line count changed'
    hdr = '#line 1 "%s"\n' % path
    open(sys.argv[2], 'w').write(hdr + src)
    print("rewrote %d launches, %d extern __shared__, %d static __shared__ arrays" % (n, m, key[0]))

main()
