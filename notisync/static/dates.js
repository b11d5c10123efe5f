// How a moment is written on the dashboard: the time for today ("14:03"),
// the date and time before that ("Nov 28, 14:03"), and the year too when it is
// not this year ("Nov 28, 2025, 14:03"). The hour format follows the locale.

const TIME = { hour: 'numeric', minute: '2-digit' };

/** iso: a timestamp string; now: a Date (tests pass one). '' for anything unparsable. */
export function formatWhen(iso, now = new Date(), locale = undefined) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return '';
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString(locale, TIME);
  const options = { month: 'short', day: 'numeric', ...TIME };
  if (d.getFullYear() !== now.getFullYear()) options.year = 'numeric';
  return d.toLocaleString(locale, options);
}

/** The full date and time, for a tooltip. */
export function fullWhen(iso, locale = undefined) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return '';
  return d.toLocaleString(locale, { dateStyle: 'full', timeStyle: 'short' });
}
