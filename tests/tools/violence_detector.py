# Test helper for tests/test_retrieve.sh: a violence detector for a corpus and the ids it must
# drop, computed here independently of customdiff-retrieve (plain Python, no NumPy).
# Usage: violence_detector.py CORPUS.npy ID OUT.npy  -> writes OUT.npy [2, d] (row 0: the corpus
# mean, row 1, the "violent" row: corpus row ID) and prints the ids whose vector v scores
# v . row1 > v . row0 (clip-retrieval's rule: drop when the argmax is row 1), space-separated.
#        violence_detector.py --matrix N D OUT.npy  -> an N x D float32 matrix of zeros (bad shapes)
import struct, sys, ast
def read_npy(path):
    b = open(path, 'rb').read()
    assert b[:6] == b'\x93NUMPY'
    if b[6] == 1: hl = struct.unpack('<H', b[8:10])[0]; off = 10
    else: hl = struct.unpack('<I', b[8:12])[0]; off = 12
    h = ast.literal_eval(b[off:off + hl].decode('latin1'))
    assert h['descr'] == '<f4' and not h['fortran_order']
    n, d = h['shape']
    v = struct.unpack('<%df' % (n * d), b[off + hl:off + hl + 4 * n * d])
    return [list(v[i * d:(i + 1) * d]) for i in range(n)], d
def write_npy(path, rows):
    d = len(rows[0])
    h = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (len(rows), d)
    h += ' ' * (64 - (10 + len(h) + 1) % 64) + '\n'
    with open(path, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode('latin1'))
        for r in rows: f.write(struct.pack('<%df' % d, *r))
if sys.argv[1] == '--matrix':
    write_npy(sys.argv[4], [[0.0] * int(sys.argv[3]) for _ in range(int(sys.argv[2]))])
    sys.exit(0)
rows, d = read_npy(sys.argv[1])
q = rows[int(sys.argv[2])]
m = [sum(r[i] for r in rows) / len(rows) for i in range(d)]
write_npy(sys.argv[3], [m, q])            # row 0: the corpus mean, row 1 ("violent"): item q
dot = lambda a, b: sum(x * y for x, y in zip(a, b))
print(' '.join(str(i) for i, r in enumerate(rows) if dot(r, q) > dot(r, m)))
