"""Small-file packs with a shared dictionary (issue 14): a tree's small files
(under 512 KiB) in the writer's entry order, cut into 1 MiB packs compressed
alone at zstd level 3, without a dictionary, with one trained on the files
(64 KiB to 1 MiB, its size counted, its training time shown), and with a
raw-content dictionary of sampled file heads; and tar|zstd -3 -T2 of the whole.
Usage: python3 pack-dictionaries.py DIR (needs the zstandard module).

On /usr/include (7,911 files, 110.5 MB, 2026-12-04): tar|zstd -3 14.13 MB;
1 MiB packs 19.03 MB; trained dictionaries 0.992x (64 KiB), 0.980x
(112 KiB), 0.943x (256 KiB), 0.823x (1 MiB) of that, but training took 37 to
80 s; raw-content dictionaries about 0.99x. pack-sizes.py gives 2 MiB packs
15.67 MB and 4 MiB 14.78 MB: the pack size is the lever."""
import os, sys, zstandard, subprocess, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tree_walk import walk
top=sys.argv[1]
data=[open(p,'rb').read() for p in walk(top)]
small=[d for d in data if len(d) < 512*1024]
blob=b''.join(small)
tar=int(subprocess.run(f"tar -C {top} -cf - . | zstd -3 -T2 -c | wc -c",shell=True,capture_output=True,text=True).stdout)
print("files",len(data),"small bytes",len(blob),"tar|zstd -3", tar)
P=1<<20
packs=[blob[i:i+P] for i in range(0,len(blob),P)]
for lvl in (3,):
    c=zstandard.ZstdCompressor(level=lvl)
    base=sum(len(c.compress(p)) for p in packs)
    print(f"level {lvl} no dict: {base}")
    for ksz in (64,112,256,1024):
        t=time.time()
        # samples: every small file (capped) as zstd --train does
        samples=[d[:128*1024] for d in small if d]
        dic=zstandard.train_dictionary(ksz*1024, samples, level=lvl, threads=2)
        tt=time.time()-t
        cd=zstandard.ZstdCompressor(level=lvl, dict_data=dic)
        tot=sum(len(cd.compress(p)) for p in packs)+len(dic.as_bytes())
        print(f"level {lvl} dict {ksz} KiB: {tot} ({tot/base:.3f} of no dict) train {tt:.1f}s")
# raw-content dictionary: a strided sample of file heads
for ksz in (256,1024):
    stride=max(1,len(small)*2048//(ksz*1024))
    raw=b''.join(d[:2048] for d in small[::stride])[:ksz*1024]
    dic=zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    t=time.time()
    cd=zstandard.ZstdCompressor(level=3, dict_data=dic)
    P=1<<20; packs=[blob[i:i+P] for i in range(0,len(blob),P)]
    tot=sum(len(cd.compress(p)) for p in packs)+len(zstandard.ZstdCompressor(level=3).compress(raw))
    print(f"1 MiB packs, raw dict {ksz} KiB sampled heads: {tot} ({time.time()-t:.1f}s)")
