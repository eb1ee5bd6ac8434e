"""What the metadata columns of a tree cost compressed, group by group of 1,024
entries as the writer cuts them: ctime seconds and nanoseconds, ctime as one
delta-coded u64, inode numbers delta coded, names. Usage: python3 columns.py DIR."""
import os, sys, zstandard, struct
top=sys.argv[1]
ents=[]
def walk(d):
    names=sorted(os.listdir(d)); subs=[]
    for n in names:
        p=os.path.join(d,n); st=os.lstat(p); ents.append((n.encode(),st))
        if os.path.isdir(p): subs.append(p)
    for s in subs: walk(s)
walk(top)
c=zstandard.ZstdCompressor(level=3)
def cols(fn, fmt):
    tot=0
    for i in range(0,len(ents),1024):
        g=ents[i:i+1024]
        tot+=len(c.compress(b''.join(struct.pack(fmt,fn(e)) for e in g)))
    return tot
print("entries",len(ents))
print("ctime_s", cols(lambda e:e[1].st_ctime_ns//10**9,'<q'))
print("ctime_ns", cols(lambda e:e[1].st_ctime_ns%10**9,'<I'))
print("ino delta", cols(lambda e:e[1].st_ino,'<Q'))
tot=0
for i in range(0,len(ents),1024):
    g=ents[i:i+1024]; tot+=len(c.compress(b''.join(n for n,_ in g)))
print("names",tot)
tot=0
for i in range(0,len(ents),1024):
    g=ents[i:i+1024]
    inos=[e[1].st_ino for e in g]; d=[inos[0]]+[(inos[k]-inos[k-1])%2**64 for k in range(1,len(inos))]
    tot+=len(c.compress(b''.join(struct.pack('<Q',x) for x in d)))
print("ino delta real",tot)
tot=0
for i in range(0,len(ents),1024):
    g=ents[i:i+1024]
    v=[e[1].st_ctime_ns for e in g]; d=[v[0]]+[(v[k]-v[k-1])%2**64 for k in range(1,len(v))]
    tot+=len(c.compress(b''.join(struct.pack('<Q',x) for x in d)))
print("ctime combined delta",tot)
import statistics
v=[e[1].st_ctime_ns for e in ents[:5000]]
print("median step ns", statistics.median([v[k]-v[k-1] for k in range(1,len(v))]))
print("btime?", hasattr(ents[0][1],'st_birthtime'))
