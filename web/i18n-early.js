// Loaded first, as a classic script in each page's <head>, before anything is
// shown: a page in Dutch or Swedish would otherwise show its English (the
// words in the HTML) until i18n.js has loaded the catalogue and translated it.
// It hides the page (class `i18n-pending` on <html>) until translatePage()
// has run, and for at most a second whatever happens: a page that cannot load
// its catalogue shows its English rather than nothing. An English page is
// never hidden. It also starts fetching the catalogue at once.
// The language is chosen as i18n.js chooseLanguage() does.
(() => {
  const ours = ['en', 'nl', 'sv'];
  let lang = null;
  try { lang = localStorage.getItem('convene-language'); } catch { /* private mode */ }
  if (!lang || !ours.includes(lang)) {
    lang = 'en';
    for (const tag of navigator.languages || [navigator.language]) {
      const base = String(tag).toLowerCase().split('-')[0];
      if (ours.includes(base)) { lang = base; break; }
    }
  }
  if (lang === 'en') return;
  const root = document.documentElement;
  root.classList.add('i18n-pending');
  // No inline styles under the page's CSP; styling by script is allowed.
  root.style.visibility = 'hidden';
  setTimeout(() => {
    root.classList.remove('i18n-pending');
    root.style.visibility = '';
  }, 1000);
  const preload = document.createElement('link');
  preload.rel = 'preload';
  preload.as = 'fetch';
  preload.crossOrigin = 'anonymous';
  preload.href = `/assets/i18n/${lang}.json`;
  document.head.append(preload);
})();
