"""Pack size against compression: the small files of a tree, in the writer's
entry order, cut into 1, 4 and 16 MiB pieces compressed alone at zstd levels
3, 6, 9 and 19. Usage: python3 pack-sizes.py DIR (needs the zstandard module)."""
import os, sys, zstandard
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tree_walk import walk
top=sys.argv[1]
data=[open(p,'rb').read() for p in walk(top)]
small=[d for d in data if len(d) < 512*1024]
big=[d for d in data if len(d) >= 512*1024]
blob=b''.join(small)
print("files",len(data),"small bytes",len(blob),"big bytes",sum(map(len,big)))
for size in (1<<20, 4<<20, 16<<20):
    for lvl in (3,6,9,19):
        c=zstandard.ZstdCompressor(level=lvl)
        tot=sum(len(c.compress(blob[i:i+size])) for i in range(0,len(blob),size))
        print(f"pack {size>>20} MiB level {lvl}: {tot/1e6:.3f} MB")
