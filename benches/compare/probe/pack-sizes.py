"""Pack size against compression: the small files of a tree, in the writer's
entry order, cut into 1, 4 and 16 MiB pieces compressed alone at zstd levels
3, 6, 9 and 19. Usage: python3 pack-sizes.py DIR (needs the zstandard module)."""
import os, sys, zstandard
top=sys.argv[1]
def walk(d):
    names=sorted(os.listdir(d))
    out=[]; subs=[]
    for n in names:
        p=os.path.join(d,n)
        if os.path.islink(p): continue
        if os.path.isdir(p): subs.append(p)
        elif os.path.isfile(p): out.append(p)
    for p in out: yield p
    for s in subs: yield from walk(s)
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
