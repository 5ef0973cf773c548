import time,sys
out=open(sys.argv[1],'w'); end=time.time()+float(sys.argv[2])
def ds():
    for l in open('/proc/diskstats'):
        f=l.split()
        if f[2]=='vda': return int(f[9]), int(f[7]), int(f[10])  # sectors written, writes completed, ms writing
def mi():
    d={}
    for l in open('/proc/meminfo'):
        k,v=l.split(':'); d[k]=int(v.split()[0])
    return d['Dirty'], d['Writeback']
p=ds()
while time.time()<end:
    time.sleep(0.05)
    c=ds(); dd,wb=mi()
    out.write(f"{time.time():.3f} {(c[0]-p[0])*512//1024} {c[1]-p[1]} {c[2]-p[2]} {dd} {wb}\n"); p=c
